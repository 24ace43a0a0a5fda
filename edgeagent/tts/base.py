"""The synthesizer contract.  Synthesis is blocking; callers run it in a worker thread."""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from edgeagent.config import TtsConfig


class TtsError(RuntimeError):
    """A voice cannot be loaded or text cannot be synthesized; the message says why."""


class Synthesizer(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """int16 mono blocks at ``sample_rate``, yielded as soon as each is ready."""
        ...

    def configure(self, tts: TtsConfig) -> None:
        """Speaking rate and volume (``tts.length_scale``, ``tts.volume``) for the next synthesis (live config)."""
        ...
