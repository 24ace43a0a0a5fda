"""The synthesizer contract.  Synthesis is blocking; callers run it in a worker thread."""

from __future__ import annotations

import importlib
from typing import Iterator, Protocol

import numpy as np

from edgeagent.config import TtsConfig


class TtsError(RuntimeError):
    """A voice cannot be loaded or text cannot be synthesized; the message says why."""


LEAD_S, TAIL_S = 0.02, 0.18  # silence kept before a sentence's first sound and after its last
EDGE_LEVEL = 160  # int16: below this (-46 dBFS) a sample at a sentence's edges is silence


def trim_silence(pcm: np.ndarray, rate: int) -> np.ndarray:
    """A synthesized sentence with LEAD_S of silence before its first sound and TAIL_S after its last.
    Silence a voice puts first is heard as time to first audio (hibari: 200-320 ms, piper: 0-120 ms),
    and the silences around two sentences add up to a long gap between them."""
    sound = np.flatnonzero(np.abs(pcm) > EDGE_LEVEL)
    if not len(sound):
        return pcm[:0]
    return pcm[max(0, sound[0] - int(LEAD_S * rate)) : sound[-1] + int(TAIL_S * rate)]


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
