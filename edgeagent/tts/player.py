"""Streams a reply into the speaker as it is written: each text chunk is synthesized on a worker
thread the moment it arrives, and its audio is queued while the next chunk is synthesized.

The player keeps the sample range of every chunk, so after a barge-in it can say exactly what
the user heard (``heard()``): the history and the trace record that, not the whole reply.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import numpy as np

from edgeagent.events import PlaybackFinished

BLOCK_MS = 20  # audio is written in frame-sized blocks so a cancel never waits behind a long write


@dataclass
class _Segment:
    text: str
    start: int  # offsets in the sink's input samples, from the start of the reply
    end: int


class ReplyPlayer:
    def __init__(self, synthesizer, sink, volume: float = 1.0):
        self.synthesizer = synthesizer
        self.sink = sink
        self.volume = volume
        self._segments: list[_Segment] = []
        self._base = 0
        self.first_chunk_t: float | None = None  # first synthesized audio ready
        self.first_text_t: float | None = None  # first text chunk handed to synthesis

    async def play(self, chunks: AsyncIterator[str], on_first_audio: Callable[[float], None] = lambda t: None) -> PlaybackFinished:
        """Speak every chunk; returns when the last sample is queued and played (or raises on cancel)."""
        self._segments, self.first_chunk_t, self.first_text_t = [], None, None
        self._base = self.sink.played_samples
        self.sink.on_first_play = on_first_audio
        queue: asyncio.Queue[tuple[str, np.ndarray] | None] = asyncio.Queue(maxsize=2)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._synthesize(chunks, queue))
            group.create_task(self._write(queue))
        while self.sink.queued_samples:  # let the speaker play out what is queued
            await asyncio.sleep(BLOCK_MS / 1000)
        return self.heard(cancelled=False)

    async def _synthesize(self, chunks: AsyncIterator[str], queue: asyncio.Queue) -> None:
        async for text in chunks:
            if not text.strip():
                continue
            self.first_text_t = self.first_text_t or time.monotonic()
            audio = await asyncio.to_thread(self._render, text)
            self.first_chunk_t = self.first_chunk_t or time.monotonic()
            await queue.put((text, audio))
        await queue.put(None)

    def _render(self, text: str) -> np.ndarray:
        blocks = list(self.synthesizer.synthesize(text))
        return np.concatenate(blocks) if blocks else np.zeros(0, np.int16)

    async def _write(self, queue: asyncio.Queue) -> None:
        block = self.synthesizer.sample_rate * BLOCK_MS // 1000
        offset = 0
        while (item := await queue.get()) is not None:
            text, audio = item
            self._segments.append(_Segment(text, offset, offset + len(audio)))
            for i in range(0, len(audio), block):
                piece = audio[i : i + block]
                if self.volume != 1.0:
                    piece = np.clip(piece * self.volume, -32768, 32767).astype(np.int16)
                await self.sink.write(piece)
            offset += len(audio)

    def heard(self, cancelled: bool) -> PlaybackFinished:
        """What reached the speaker so far: milliseconds and the text (partial chunks cut by words)."""
        rate = self.synthesizer.sample_rate
        played = (self.sink.played_samples - self._base) * rate / self.sink.sample_rate
        words: list[str] = []
        for segment in self._segments:
            if played >= segment.end:
                words.append(segment.text.strip())
            elif played > segment.start:
                share = (played - segment.start) / max(1, segment.end - segment.start)
                parts = segment.text.split()
                words.append(" ".join(parts[: int(len(parts) * share)]))
        return PlaybackFinished(t=time.monotonic(), played_ms=round(played * 1000 / rate, 1),
                                played_text=" ".join(w for w in words if w), cancelled=cancelled)
