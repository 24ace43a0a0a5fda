"""A speaker stand-in for file output, clocked by the microphone.

A real speaker consumes audio at its own pace; a file does not.  ``ClockedSink`` plays exactly
one input frame's worth of queued audio per ``tick()`` (called once per microphone frame), so
the reply lands in the output WAV at the input time it was played, the output file is
time-aligned with the input, and cancel/queue behaviour matches a device.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgeagent.audio.frames import FRAME_RATE, frame_samples
from edgeagent.audio.wav import WavSink


FADE_SAMPLES = FRAME_RATE * 5 // 1000


class ClockedSink:
    def __init__(self, path: str | Path, frame_ms: int = 20, max_queue_ms: int = 200):
        self.sample_rate = FRAME_RATE  # the file matches the input so the two line up sample for sample
        self._file = WavSink(path, sample_rate=FRAME_RATE)
        self._frame = frame_samples(frame_ms)
        self._max_queue = frame_samples(max_queue_ms)
        self._pending: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0
        self._drained = asyncio.Event()
        self.played_samples = 0  # audio (not silence) that reached the "speaker"
        self.on_first_play: Callable[[float], None] | None = None  # one-shot: called when audio starts playing

    @property
    def queued_samples(self) -> int:
        return self._queued

    async def write(self, pcm: np.ndarray) -> None:
        """Queue int16 audio at ``sample_rate`` (the Speaker resamples to it); waits while more than
        ``max_queue_ms`` is queued."""
        block = np.asarray(pcm, dtype=np.int16)
        if len(block):
            self._pending.append(block)
            self._queued += len(block)
        while self._queued > self._max_queue:
            self._drained.clear()
            await self._drained.wait()

    def tick(self) -> np.ndarray:
        """Play one frame: queued audio, else silence.  Returns what was played (the echo reference)."""
        out = np.zeros(self._frame, dtype=np.int16)
        filled = 0
        while filled < self._frame and self._pending:
            block = self._pending[0]
            take = min(self._frame - filled, len(block))
            out[filled : filled + take] = block[:take]
            filled += take
            if take == len(block):
                self._pending.popleft()
            else:
                self._pending[0] = block[take:]
        if filled and self.on_first_play is not None:
            callback, self.on_first_play = self.on_first_play, None
            callback(time.monotonic())
        self._queued -= filled
        self.played_samples += filled
        self._file.write_now(out)
        self._drained.set()
        return out

    def clear(self) -> int:
        """Drop everything not yet played (barge-in) after a 5 ms fade, so the cut does not click."""
        queued = np.concatenate(list(self._pending)) if self._pending else np.zeros(0, np.int16)
        fade = queued[: FADE_SAMPLES] * np.linspace(1.0, 0.0, min(FADE_SAMPLES, len(queued)))
        self._pending.clear()
        self._pending.append(fade.astype(np.int16))
        self._queued = len(fade)
        self._drained.set()
        return len(queued) - len(fade)

    async def close(self) -> None:
        await self._file.close()
