"""The pipeline's unit of audio: a fixed-length block of 16 kHz mono int16 samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_RATE = 16000  # every stage between source and sink works at this rate


def frame_samples(frame_ms: int, rate: int = FRAME_RATE) -> int:
    return rate * frame_ms // 1000


@dataclass(frozen=True)
class Frame:
    """``samples`` is int16 mono at 16 kHz; ``audio_s`` is the frame start in the source stream
    and ``t`` the monotonic time the frame became available (its arrival, for a live mic)."""

    samples: np.ndarray
    index: int
    audio_s: float
    t: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / FRAME_RATE

    def to_bytes(self) -> bytes:
        return self.samples.astype("<i2", copy=False).tobytes()
