"""The recognizer contract.  Engines are blocking; callers run them on one worker thread
(``edgeagent.stt.streaming.StreamingTranscriber`` does), never on the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000  # every engine is fed int16 mono at this rate


class SttError(RuntimeError):
    """An engine cannot be created or used (missing model, missing package); says how to fix it."""


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None = None  # 0..1 where the engine gives one


class Recognizer(Protocol):
    name: str

    def start(self) -> None:
        """Begin an utterance (drops anything left from the previous one)."""
        ...

    def feed(self, samples: np.ndarray) -> str | None:
        """Feed int16 16 kHz mono audio; returns the new partial hypothesis when it changed."""
        ...

    def finish(self) -> Transcript:
        """End the utterance and return the final result; the recognizer is then idle."""
        ...

    def reset(self) -> None:
        """Drop all utterance state (barge-in, errors); the next ``start`` begins afresh."""
        ...

    def close(self) -> None:
        """Release background threads and native resources."""
        ...


def as_int16(samples: np.ndarray) -> np.ndarray:
    """Reject audio in the wrong format instead of decoding garbage."""
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected mono 1-D audio, got shape {samples.shape}")
    if samples.dtype != np.int16:
        raise ValueError(f"expected int16 samples at {SAMPLE_RATE} Hz, got {samples.dtype}")
    return samples
