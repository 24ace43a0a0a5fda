"""A cheap speech/silence guess per frame, for engines that must know when the talker paused.

Whisper is not streaming: it decodes speculatively once a pause follows speech.  The threshold
adapts to the noise floor (quietest frames seen) and the loudest speech, so it works on clean
and on noisy input without tuning; the real endpointing decision stays with the VAD.
"""

from __future__ import annotations

import numpy as np

from edgeagent.audio.level import rms


class PauseTracker:
    """Counts the trailing low-energy audio after the last speech frame."""

    def __init__(self, min_rms: float = 100.0, peak_ratio: float = 0.1, floor_ratio: float = 3.0):
        self.min_rms, self.peak_ratio, self.floor_ratio = min_rms, peak_ratio, floor_ratio
        self.reset()

    def reset(self) -> None:
        self.peak = 0.0
        self.floor: float | None = None
        self.heard_speech = False
        self.trailing_samples = 0  # low-energy samples since the last speech frame

    def update(self, samples: np.ndarray) -> bool:
        """Feed one frame; True when it is speech."""
        level = rms(samples)
        self.floor = level if self.floor is None else min(self.floor * 1.001 + 1e-3, max(level, 1.0))
        threshold = max(self.min_rms, self.peak_ratio * self.peak, self.floor_ratio * self.floor)
        speech = level > threshold
        if speech:
            self.peak = max(self.peak, level)
            self.heard_speech = True
            self.trailing_samples = 0
        else:
            self.trailing_samples += len(samples)
        return speech
