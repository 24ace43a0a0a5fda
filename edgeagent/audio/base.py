"""The two audio protocols: a source yields frames, an output takes PCM blocks and plays them."""

from __future__ import annotations

from typing import AsyncIterator, Callable, Protocol

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


class AudioOut(Protocol):
    """Where the agent's voice goes: a speaker, a WAV file, or a file clocked by the microphone."""

    sample_rate: int
    on_first_play: Callable[[float], None] | None  # one-shot: called (on the loop) when queued audio starts playing

    async def write(self, pcm: np.ndarray) -> None:
        """Queue int16 mono samples at ``sample_rate`` for output; returns once accepted."""
        ...

    def clear(self) -> int:
        """Barge-in: drop everything not yet played (after a short fade); how many samples were dropped."""
        ...

    @property
    def queued_samples(self) -> int:
        """Accepted but not yet played."""
        ...

    async def close(self) -> None: ...
