"""Shared pieces for the TTS tests: loaded-once voices and a sink that notes when audio arrived."""

from __future__ import annotations

import asyncio
import functools
import time

import numpy as np

from edgeagent.audio.wav import WavSink
from edgeagent.config import load_config
from edgeagent.tts.factory import create_synthesizer


@functools.lru_cache(maxsize=None)
def synthesizer(engine: str):
    config = load_config(env={})
    config.tts.engine = engine
    return create_synthesizer(config)


class TimedWavSink(WavSink):
    """A real WAV sink that also keeps each write's arrival time and samples."""

    def __init__(self, path, sample_rate: int):
        super().__init__(path, sample_rate=sample_rate)
        self.writes: list[tuple[float, np.ndarray]] = []

    async def write(self, pcm: np.ndarray) -> None:
        self.writes.append((time.monotonic(), np.array(pcm, dtype=np.int16)))
        await super().write(pcm)

    def audio(self) -> np.ndarray:
        return np.concatenate([w for _, w in self.writes]) if self.writes else np.zeros(0, np.int16)


class EventLog:
    """Collects the events a speaker emits (``speak(chunks, emit=log)``); ``first(kind)`` is the
    first of a kind, ``await until(kind)`` waits for it."""

    def __init__(self):
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def first(self, kind):
        return next((e for e in self.events if isinstance(e, kind)), None)

    async def until(self, kind, poll_s: float = 0.002) -> None:
        while self.first(kind) is None:
            await asyncio.sleep(poll_s)


def voice_activity(config):
    from edgeagent.ear.vad import create_voice_activity

    return create_voice_activity(config)
