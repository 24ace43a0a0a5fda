"""Raw PCM from a pipe as the microphone: ``edgeagent run --input -`` reads 16 kHz mono s16le on
standard input, so any capture program (``arecord``, ``pw-record``, a test that talks on cue) can
be the daemon's ear.  The writer sets the pace, as a microphone does."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import AsyncIterator, BinaryIO

import numpy as np

from edgeagent.audio.base import AudioError
from edgeagent.audio.frames import Frame, frame_samples


class PipeSource:
    def __init__(self, stream: BinaryIO | None = None, frame_ms: int = 20):
        self.stream = stream or sys.stdin.buffer
        self.frame_ms = frame_ms
        self._transport: asyncio.ReadTransport | None = None

    async def frames(self) -> AsyncIterator[Frame]:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 16)
        try:
            self._transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), self.stream)
        except ValueError as exc:  # a regular file: use --input FILE.wav for files
            raise AudioError(f"--input -: standard input must be a pipe ({exc})") from None
        size = frame_samples(self.frame_ms) * 2
        index = 0
        try:
            while True:
                try:
                    data = await reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    return  # the writer closed the pipe: the input has ended
                yield Frame(np.frombuffer(data, dtype="<i2").astype(np.int16), index, index * self.frame_ms / 1000,
                            time.monotonic())
                index += 1
        finally:
            await self.close()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
