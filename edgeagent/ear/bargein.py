"""Barge-in: while the agent speaks, keep listening and decide when the user interrupts.

Fed every microphone frame during SPEAKING, the detector removes the agent's own voice with
the echo canceller (reference = what the speaker sink played), then fires on the ``stop`` wake
word or, when enabled, on user speech lasting ``min_speech_ms`` (a cough or a click is
shorter).  Without an echo canceller it ducks instead: a higher VAD threshold, and the mic must
be louder than the echo the played audio alone would explain.
"""

from __future__ import annotations

import collections

import numpy as np

from edgeagent.audio.echo import EchoReference, WebRtcEchoCanceller, create_echo_canceller
from edgeagent.audio.frames import Frame
from edgeagent.events import BargeIn
from edgeagent.ear.vad import VoiceActivity
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
        self.gap_ms = 0.0
        self._played_levels: collections.deque[float] = collections.deque(maxlen=ECHO_TAIL_FRAMES)
        self._gains: collections.deque[float] = collections.deque(maxlen=GAIN_FRAMES)

    def start(self) -> None:
        """The agent starts speaking: arm the stop word, forget earlier speech."""
        self.speech_ms = self.gap_ms = 0.0
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
        floor = SPEECH_FLOOR_RMS if self.canceller else SPEECH_FLOOR_RMS + self._expected_echo(frame, played)
        speech = _rms(clean.samples) >= floor and self.vad.speech_probability(clean) >= self.threshold
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
        self._played_levels.append(_rms(played))
        loudest = max(self._played_levels)
        if loudest > SPEECH_FLOOR_RMS:
            self._gains.append(_rms(frame.samples) / loudest)
        gain = float(np.percentile(self._gains, 50)) if len(self._gains) >= GAIN_FRAMES // 4 else DUCK_RATIO
        return DUCK_MARGIN * gain * loudest


def create_barge_in(config, reference: EchoReference, wake: WakeDetector | None = None,
                    vad: VoiceActivity | None = None) -> BargeInDetector:
    """From config: VAD (``agent.barge_in_vad``; built by ``edgeagent.ear.vad.create_voice_activity``
    unless given), echo canceller (``agent.echo_cancel``), ``agent.barge_in_min_speech_ms``."""
    if vad is None and config.agent.barge_in_vad:
        from edgeagent.ear.vad import create_voice_activity  # type: ignore[attr-defined]

        vad = create_voice_activity(config)
    return BargeInDetector(
        reference, vad=vad if config.agent.barge_in_vad else None, wake=wake,
        canceller=create_echo_canceller(config.agent.echo_cancel),
        min_speech_ms=config.agent.barge_in_min_speech_ms, threshold=config.vad.threshold,
    )
