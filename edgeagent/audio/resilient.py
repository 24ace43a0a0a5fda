"""A microphone that survives being unplugged: report, retry with back-off, resume.

A USB microphone can vanish at any time.  The daemon must not die (systemd would restart it
into the same missing device): it reports the loss (STATUS=, MQTT state), retries opening the
device with exponential back-off, and carries on with the same frame clock once it is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable

from edgeagent.audio.base import AudioError
from edgeagent.audio.frames import Frame
from edgeagent.events import MicrophoneStatus

log = logging.getLogger("edgeagent.audio")


class ResilientSource:
    def __init__(self, open_device: Callable[[], object],
                 on_status: Callable[[MicrophoneStatus], None] = lambda status: None,
                 frame_ms: int = 20, first_backoff_s: float = 0.5, max_backoff_s: float = 30.0):
        self.open_device = open_device
        self.on_status = on_status
        self.frame_ms = frame_ms
        self.first_backoff_s, self.max_backoff_s = first_backoff_s, max_backoff_s
        self.losses = 0
        self._device = None
        self._closed = False

    async def open(self) -> None:
        """Wait until the device opens (retrying), so READY means the microphone really works."""
        backoff = self.first_backoff_s
        while self._device is None and not self._closed:
            try:
                device = self.open_device()
                getattr(device, "open", lambda: None)()
                self._device = device
                self.on_status(MicrophoneStatus(t=time.monotonic(), ok=True, detail="audio ok"))
            except (AudioError, OSError) as exc:
                self._lost(exc)
                await asyncio.sleep(backoff)
                backoff = min(self.max_backoff_s, backoff * 2)

    async def frames(self) -> AsyncIterator[Frame]:
        index = 0
        while not self._closed:
            await self.open()
            try:
                async for frame in self._device.frames():
                    yield Frame(frame.samples, index, index * self.frame_ms / 1000, frame.t)
                    index += 1
                return  # the device ended cleanly (closed)
            except (AudioError, OSError) as exc:
                self.losses += 1
                self._lost(exc)
                await self._close_device()

    def _lost(self, exc: Exception) -> None:
        message = f"audio device lost: {exc}"
        log.warning("%s; retrying", message)
        self.on_status(MicrophoneStatus(t=time.monotonic(), ok=False, detail=message))

    async def _close_device(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                await device.close()
            except Exception:  # a vanished device may fail to close; it is gone either way
                pass

    async def close(self) -> None:
        self._closed = True
        await self._close_device()
