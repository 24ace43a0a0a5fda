"""The two audio protocols: a source yields frames, a sink takes PCM blocks."""

from __future__ import annotations

from typing import AsyncIterator, Protocol

import numpy as np

from edgeagent.audio.frames import Frame


class AudioError(RuntimeError):
    """An audio file or device cannot be used; the message says which and why."""


class AudioSource(Protocol):
    frame_ms: int

    def frames(self) -> AsyncIterator[Frame]:
        """Frames in order until the source ends (a file) or is closed (a device)."""
        ...

    async def close(self) -> None: ...


class AudioSink(Protocol):
    sample_rate: int

    async def write(self, pcm: np.ndarray) -> None:
        """Queue int16 mono samples at ``sample_rate`` for output; returns once accepted."""
        ...

    async def close(self) -> None: ...
