"""Wake-word detection: the contract every wake engine implements.

``process`` is called inline on the event loop for every frame, so an implementation must cost
well under a frame (microWakeWord: ~0.1 ms per 20 ms frame).  The ``stop`` word, if configured,
fires only between ``set_speaking(True)`` and ``set_speaking(False)``.
"""

from __future__ import annotations

from typing import Protocol

from edgeagent.audio.frames import Frame
from edgeagent.events import WakeDetected


class WakeDetector(Protocol):
    def process(self, frame: Frame) -> list[WakeDetected]:
        """Feed one frame; detections that fired on it (already thresholded, debounced, refractory)."""
        ...

    def set_speaking(self, speaking: bool) -> None:
        """The agent started/stopped speaking: arms/disarms the stop word."""
        ...

    def reset(self) -> None:
        """Forget streaming state (e.g. after a detection or an audio gap)."""
        ...
