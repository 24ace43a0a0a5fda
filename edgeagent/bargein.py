"""Barge-in by voice: the user talking over the agent stops it.

The microphone also hears the agent's own voice.  Without acoustic echo cancellation the
detector "ducks": a frame counts as the user's speech only if VAD says speech *and* the mic is
clearly louder than what the speaker just played, and only a sustained run of such frames
(``min_speech_ms``) fires, so coughs and echo rarely cut the agent off.
"""

from __future__ import annotations

import time

import numpy as np

from edgeagent.audio.frames import Frame
from edgeagent.events import BargeIn


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float32))))) if len(samples) else 0.0


class VadBargeIn:
    def __init__(self, activity, min_speech_ms: int, frame_ms: int = 20, threshold: float = 0.5,
                 echo_ratio: float = 1.0):
        self.activity = activity
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self.threshold = threshold
        self.echo_ratio = echo_ratio  # mic must be this much louder than the played reference
        self._run_ms = 0
        self._onset_t: float | None = None

    def process(self, mic: Frame, played: np.ndarray | None) -> BargeIn | None:
        voiced = self.activity.speech_probability(mic) >= self.threshold
        if voiced and played is not None and len(played):
            voiced = rms(mic.samples) > self.echo_ratio * rms(played)
        if not voiced:
            self._run_ms, self._onset_t = 0, None
            return None
        self._onset_t = self._onset_t or mic.t
        self._run_ms += self.frame_ms
        if self._run_ms >= self.min_speech_ms:
            self.reset()
            return BargeIn(t=time.monotonic(), source="vad")
        return None

    def reset(self) -> None:
        self._run_ms, self._onset_t = 0, None
        self.activity.reset()
