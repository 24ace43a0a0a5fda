"""Barge-in: while the agent speaks, keep listening and decide when the user interrupts.

Fed every microphone frame during SPEAKING, the detector removes the agent's own voice with
the echo canceller (reference = what the speaker sink played), then fires on the ``stop`` wake
word or, when enabled, on user speech lasting ``min_speech_ms`` (a cough or a click is
shorter).  Without an echo canceller it ducks instead: a higher VAD threshold, and the mic must
be louder than the echo the played audio alone would explain.
"""

from __future__ import annotations

import numpy as np

from edgeagent.audio.echo import EchoReference, WebRtcEchoCanceller, create_echo_canceller
from edgeagent.audio.frames import Frame
from edgeagent.events import BargeIn
from edgeagent.vad import VoiceActivity
from edgeagent.wake import WakeDetector

DUCKED_THRESHOLD = 0.9
DUCK_RATIO = 0.5  # without AEC the mic must carry at least half the level of what is being played


def _rms(samples: np.ndarray) -> float:
    x = samples.astype(np.float32)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


class BargeInDetector:
    def __init__(self, reference: EchoReference, *, vad: VoiceActivity | None = None,
                 wake: WakeDetector | None = None, canceller: WebRtcEchoCanceller | None = None,
                 min_speech_ms: int = 300, threshold: float = 0.5):
        self.reference = reference
        self.vad = vad
        self.wake = wake
        self.canceller = canceller
        self.min_speech_ms = min_speech_ms
        self.threshold = threshold if canceller else max(threshold, DUCKED_THRESHOLD)
        self.speech_ms = 0.0

    def start(self) -> None:
        """The agent starts speaking: arm the stop word, forget earlier speech."""
        self.speech_ms = 0.0
        if self.vad:
            self.vad.reset()
        if self.wake:
            self.wake.set_speaking(True)

    def stop(self) -> None:
        """Speaking ended (finished or cancelled): disarm the stop word."""
        if self.wake:
            self.wake.set_speaking(False)

    def process(self, frame: Frame) -> BargeIn | None:
        """Feed one mic frame (inline on the loop; ~0.1 ms AEC + VAD); a BargeIn when it fires."""
        played = self.reference.take(len(frame.samples))
        clean = frame
        if self.canceller is not None:
            clean = Frame(self.canceller.process(frame.samples, played), frame.index, frame.audio_s, frame.t)
        if self.wake is not None and self.wake.process(clean):
            return BargeIn(t=frame.t, source="stop_word")
        if self.vad is None:
            return None
        speech = self.vad.speech_probability(clean) >= self.threshold
        if speech and self.canceller is None:
            speech = _rms(frame.samples) >= DUCK_RATIO * _rms(played) + 1.0
        if not speech:
            self.speech_ms = 0.0
            return None
        self.speech_ms += 1000 * frame.duration_s
        if self.speech_ms >= self.min_speech_ms:
            self.speech_ms = 0.0
            return BargeIn(t=frame.t, source="vad")
        return None


def create_barge_in(config, reference: EchoReference, wake: WakeDetector | None = None,
                    vad: VoiceActivity | None = None) -> BargeInDetector:
    """From config: VAD (``agent.barge_in_vad``; built by ``edgeagent.vad.create_voice_activity``
    unless given), echo canceller (``agent.echo_cancel``), ``agent.barge_in_min_speech_ms``."""
    if vad is None and config.agent.barge_in_vad:
        from edgeagent.vad import create_voice_activity  # type: ignore[attr-defined]

        vad = create_voice_activity(config)
    return BargeInDetector(
        reference, vad=vad if config.agent.barge_in_vad else None, wake=wake,
        canceller=create_echo_canceller(config.agent.echo_cancel),
        min_speech_ms=config.agent.barge_in_min_speech_ms, threshold=config.vad.threshold,
    )
