"""WAV (and other libsndfile formats) as a frame source and as a sink.

Files of any rate, width (8/16/24/32-bit int, float) and channel count are converted to the
pipeline format on read; a corrupt or non-audio file raises AudioError naming the file.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
import soundfile

from edgeagent.audio.base import AudioError
from edgeagent.audio.convert import StreamResampler, to_pipeline_format
from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples


def read_audio(path: str | Path, rate: int = FRAME_RATE) -> np.ndarray:
    """The whole file as int16 mono at ``rate``."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    return to_pipeline_format(data, file_rate, rate)


def split_frames(samples: np.ndarray, frame_ms: int) -> list[np.ndarray]:
    """Fixed-length frames; the last one is zero-padded so no audio is dropped."""
    n = frame_samples(frame_ms)
    pad = (-len(samples)) % n
    if pad:
        samples = np.concatenate([samples, np.zeros(pad, dtype=np.int16)])
    return [samples[i : i + n] for i in range(0, len(samples), n)]


class WavSource:
    """Frames from a file, either paced like a live microphone or as fast as the consumer takes them."""

    def __init__(self, path: str | Path, frame_ms: int = 20, realtime: bool = False, tail_silence_ms: int = 0):
        self.path = Path(path)
        self.frame_ms = frame_ms
        self.realtime = realtime
        samples = read_audio(self.path)
        if tail_silence_ms:  # lets end-of-turn logic see the silence a live mic would deliver
            samples = np.concatenate([samples, np.zeros(frame_samples(tail_silence_ms), np.int16)])
        self._frames = split_frames(samples, frame_ms)
        self._closed = False

    @property
    def duration_s(self) -> float:
        return len(self._frames) * self.frame_ms / 1000

    async def frames(self) -> AsyncIterator[Frame]:
        step = self.frame_ms / 1000
        start = time.monotonic()
        for index, samples in enumerate(self._frames):
            if self._closed:
                return
            if self.realtime:
                delay = start + (index + 1) * step - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let other stages run between frames
            yield Frame(samples=samples, index=index, audio_s=index * step, t=time.monotonic())

    async def close(self) -> None:
        self._closed = True


class WavSink:
    """Writes int16 mono audio to a WAV file as it arrives (streamed, not held in memory): an
    output that plays everything at once, so nothing is ever queued to clear."""

    def __init__(self, path: str | Path, sample_rate: int = 22050, input_rate: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sample_rate = sample_rate
        self._resampler = StreamResampler(input_rate or sample_rate, sample_rate)
        self._file = soundfile.SoundFile(str(self.path), "w", samplerate=sample_rate, channels=1, subtype="PCM_16",
                                         format="WAV")
        self.samples_written = 0
        self.on_first_play: Callable[[float], None] | None = None
        self.queued_samples = 0

    async def write(self, pcm: np.ndarray) -> None:
        if len(pcm) and self.on_first_play is not None:
            callback, self.on_first_play = self.on_first_play, None
            callback(time.monotonic())
        self.write_now(pcm)

    def clear(self) -> int:
        return 0

    def write_now(self, pcm: np.ndarray, last: bool = False) -> None:
        out = self._resampler.process(np.asarray(pcm, dtype=np.int16), last=last)
        self._file.write(out)
        self.samples_written += len(out)

    async def close(self) -> None:
        if not self._file.closed:
            self.write_now(np.zeros(0, np.int16), last=True)  # flush the resampler's tail
            self._file.close()
