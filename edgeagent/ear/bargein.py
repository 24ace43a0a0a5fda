"""Barge-in: while the agent replies, keep listening and decide when the user interrupts.

Fed every microphone frame while the agent thinks or speaks, the detector is the one path for
the stop word (and a wake word said over the reply), which fires while the agent speaks, and,
with a VAD, for user speech lasting ``min_speech_ms`` (a cough or a click is shorter).  The VAD
hears the microphone after the echo canceller removed the agent's own voice (reference = what
the speaker played).  The wake detector hears the microphone as it is: measured on a reply's
echo with "Alexa" said over it, microWakeWord found the word in 5 of 6 cases on the raw signal
and in 1 of 6 on AEC3's output, whose double-talk suppression smears the word's spectrum.
Without an echo canceller it ducks instead: a higher VAD threshold, and the mic must be louder
than the echo the played audio alone would explain.
"""

from __future__ import annotations

import collections

import numpy as np

from edgeagent.audio.echo import EchoReference, WebRtcEchoCanceller, create_echo_canceller
from edgeagent.audio.frames import Frame
from edgeagent.audio.level import rms
from edgeagent.events import BargeIn
from edgeagent.config import AgentConfig, Config
from edgeagent.ear.vad import VoiceActivity, create_voice_activity
from edgeagent.ear.wake import WakeDetector

DUCKED_THRESHOLD = 0.9
# Without AEC: the echo path gain (mic level / played level) is learnt from the median of
# recent frames (the user is silent most of the time); speech must be ~6 dB above the echo it predicts.
DUCK_RATIO = 0.5  # assumed gain until enough frames were seen
DUCK_MARGIN = 2.0
GAIN_FRAMES = 100
# AEC leaves a faint (~-60 dBFS) residue of our voice that a level-blind VAD still calls speech;
# a user talking to the device is 20-30 dB louder.
SPEECH_FLOOR_RMS = 100.0  # about -50 dBFS
ECHO_TAIL_FRAMES = 8  # without AEC, duck against the loudest of the last ~160 ms played (echo lags)
GAP_MS = 150  # pauses between syllables this short do not restart the speech count


class BargeInDetector:
    def __init__(self, reference: EchoReference, wake: WakeDetector, *, vad: VoiceActivity | None = None,
                 canceller: WebRtcEchoCanceller | None = None, min_speech_ms: int = 300, threshold: float = 0.5):
        self.reference = reference
        self.vad = vad
        self.wake = wake
        self.canceller = canceller
        self.min_speech_ms = min_speech_ms
        self.threshold = threshold if canceller else max(threshold, DUCKED_THRESHOLD)
        self.speech_ms = 0.0
        self.gap_ms = 0.0
        self._played_levels: collections.deque[float] = collections.deque(maxlen=ECHO_TAIL_FRAMES)
        self._gains: collections.deque[float] = collections.deque(maxlen=GAIN_FRAMES)

    def configure(self, agent: AgentConfig) -> None:
        """Live config: how long the user must talk over the reply."""
        self.min_speech_ms = agent.barge_in_min_speech_ms

    def start(self) -> None:
        """The agent starts replying: forget earlier speech and echo that is no longer playing."""
        self.speech_ms = self.gap_ms = 0.0
        self.reference.clear()
        if self.vad:
            self.vad.reset()

    def process(self, frame: Frame) -> BargeIn | None:
        """Feed one mic frame (inline on the loop; ~0.1 ms AEC + VAD); a BargeIn when it fires."""
        played = self.reference.take(len(frame.samples))
        clean = frame
        if self.canceller is not None:
            clean = Frame(self.canceller.process(frame.samples, played), frame.index, frame.audio_s, frame.t)
        if self.wake.process(frame) and self.wake.speaking:  # fed every frame (streaming features); armed while speaking
            return BargeIn(t=frame.t, source="stop_word")
        if self.vad is None:
            return None
        floor = SPEECH_FLOOR_RMS if self.canceller else SPEECH_FLOOR_RMS + self._expected_echo(frame, played)
        speech = rms(clean.samples) >= floor and self.vad.speech_probability(clean) >= self.threshold
        if not speech:
            self.gap_ms += 1000 * frame.duration_s
            if self.gap_ms > GAP_MS:
                self.speech_ms = 0.0
            return None
        self.gap_ms = 0.0
        self.speech_ms += 1000 * frame.duration_s
        if self.speech_ms >= self.min_speech_ms:
            self.speech_ms = 0.0
            return BargeIn(t=frame.t, source="vad")
        return None


    def _expected_echo(self, frame: Frame, played: np.ndarray) -> float:
        self._played_levels.append(rms(played))
        loudest = max(self._played_levels)
        if loudest > SPEECH_FLOOR_RMS:
            self._gains.append(rms(frame.samples) / loudest)
        gain = float(np.percentile(self._gains, 50)) if len(self._gains) >= GAIN_FRAMES // 4 else DUCK_RATIO
        return DUCK_MARGIN * gain * loudest


def create_barge_in(config: Config, reference: EchoReference, wake: WakeDetector) -> BargeInDetector:
    """From config: a VAD of its own (``agent.barge_in_vad``), the echo canceller (``agent.echo_cancel``),
    ``agent.barge_in_min_speech_ms``; ``wake`` is the daemon's one wake detector."""
    return BargeInDetector(
        reference, wake, vad=create_voice_activity(config) if config.agent.barge_in_vad else None,
        canceller=create_echo_canceller(config.agent.echo_cancel),
        min_speech_ms=config.agent.barge_in_min_speech_ms, threshold=config.vad.threshold,
    )
