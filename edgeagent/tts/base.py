"""The synthesizer contract.  Synthesis is blocking; callers run it in a worker thread."""

from __future__ import annotations

import importlib
from typing import Iterator, Protocol

import numpy as np

from edgeagent.config import TtsConfig


class TtsError(RuntimeError):
    """A voice cannot be loaded or text cannot be synthesized; the message says why."""


def engine_package(module: str, distribution: str):
    """An engine's package, imported only when that engine is created; TtsError says how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TtsError(f"{distribution} is not installed: pip install 'edgeagent[tts]'") from exc


class Synthesizer(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """int16 mono blocks at ``sample_rate``, yielded as soon as each is ready."""
        ...

    def configure(self, tts: TtsConfig) -> None:
        """Speaking rate and volume (``tts.length_scale``, ``tts.volume``) for the next synthesis (live config)."""
        ...
