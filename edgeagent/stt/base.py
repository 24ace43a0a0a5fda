"""The recognizer contract.  Engines are blocking; callers run them in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class SttError(RuntimeError):
    """A recognizer cannot be created (missing model directory, bad grammar); says which and why."""


@dataclass(frozen=True)
class Transcript:
    text: str
    confidence: float | None = None


class Recognizer(Protocol):
    name: str

    def start(self) -> None:
        """Begin an utterance."""
        ...

    def feed(self, samples: np.ndarray) -> str | None:
        """Feed int16 16 kHz audio; returns the new partial hypothesis when it changed."""
        ...

    def finish(self) -> Transcript:
        """End the utterance and return the final result."""
        ...

    def reset(self) -> None:
        """Drop all utterance state (barge-in, errors)."""
        ...
