"""Barge-in by voice: the user talking over the agent stops it.

The microphone also hears the agent's own voice.  Without acoustic echo cancellation the
detector "ducks": it learns how loud the agent's voice comes back through the microphone
(echo coupling = a low percentile of mic level / played level while the agent talks) and only
counts a frame as the user's speech if VAD says speech *and* the mic is clearly louder than
that echo estimate.  Only a sustained run (``min_speech_ms``) fires, so coughs and the agent's
own voice rarely cut it off.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from edgeagent.audio.frames import Frame
from edgeagent.events import BargeIn

AUDIBLE_RMS = 300.0  # played audio quieter than this cannot produce a meaningful echo


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float32))))) if len(samples) else 0.0


class EchoGate:
    """Tells the user's voice from the agent's echo by level, learning the echo path's gain."""

    def __init__(self, margin: float = 2.5, history: int = 50, reference_frames: int = 5):
        self.margin = margin
        self._ratios: collections.deque[float] = collections.deque(maxlen=history)
        self._played: collections.deque[float] = collections.deque(maxlen=reference_frames)  # covers echo delay
        self.coupling = 0.0

    def is_user(self, mic: np.ndarray, played: np.ndarray | None) -> bool:
        self._played.append(rms(played) if played is not None else 0.0)
        reference = max(self._played)
        level = rms(mic)
        if reference < AUDIBLE_RMS:
            return True
        self._ratios.append(level / reference)
        self.coupling = float(np.percentile(self._ratios, 20))
        return level > self.margin * self.coupling * reference

    def reset(self) -> None:
        self._ratios.clear()
        self._played.clear()
        self.coupling = 0.0


class VadBargeIn:
    def __init__(self, activity, min_speech_ms: int, frame_ms: int = 20, threshold: float = 0.5,
                 echo_gate: EchoGate | None = None):
        self.activity = activity
        self.min_speech_ms = min_speech_ms
        self.frame_ms = frame_ms
        self.threshold = threshold
        self.echo_gate = echo_gate or EchoGate()
        self._run_ms = 0

    def process(self, mic: Frame, played: np.ndarray | None) -> BargeIn | None:
        user = self.echo_gate.is_user(mic.samples, played)  # always, so the echo estimate keeps learning
        voiced = user and self.activity.speech_probability(mic) >= self.threshold
        self._run_ms = self._run_ms + self.frame_ms if voiced else 0
        if self._run_ms >= self.min_speech_ms:
            self.reset()
            return BargeIn(t=time.monotonic(), source="vad")
        return None

    def reset(self) -> None:
        self._run_ms = 0
        self.activity.reset()
        self.echo_gate.reset()
