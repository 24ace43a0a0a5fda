"""Barge-in: while the agent replies, keep listening and decide when the user interrupts.

Fed every microphone frame while the agent thinks or speaks, the detector is the one path for
the stop word (and a wake word said over the reply), which fires while the agent speaks, and,
with a VAD, for the user talking over the reply.  That has two steps, so it feels instant and is
not fooled: ``BargeInOnset`` as soon as two frames sound like voice (WebRTC VAD, 40 ms): the reply
ducks; ``BargeIn`` after ``min_speech_ms`` of voice of which ``SPEECH_MS`` is speech to Silero,
which coughs, knocks and claps are not (WebRTC VAD calls them all speech): the reply stops;
``BargeInCleared`` when the sound ends without becoming speech: the reply goes on at full level.  Both VADs hear the
microphone after the echo canceller removed the agent's own voice (reference = what the speaker
played).  The wake detector hears the microphone as it is: measured on a reply's echo with
"Alexa" said over it, microWakeWord found the word in 5 of 6 cases on the raw signal and in 1 of 6
on AEC3's output, whose double-talk suppression smears the word's spectrum.  Without an echo
canceller it ducks its thresholds instead: a higher VAD threshold, and the mic must be louder than
the echo the played audio alone would explain.
"""

from __future__ import annotations

import collections

import numpy as np

from edgeagent.audio.echo import EchoReference, WebRtcEchoCanceller, create_echo_canceller
from edgeagent.audio.frames import Frame
from edgeagent.audio.level import rms
from edgeagent.events import BargeIn, BargeInCleared, BargeInOnset
from edgeagent.config import AgentConfig, Config
from edgeagent.ear.vad import SileroActivity, VoiceActivity, create_voice_activity
from edgeagent.ear.wake import WakeDetector
from edgeagent.modelstore import model_path

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
ONSET_MS = 40  # voice-like sound this long ducks the reply
CLEAR_MS = 300  # this long without it, a sound that did not become speech is over (pauses between words are shorter)
# without AEC the echo reaches the VADs, and only the level gate keeps it out: bits of echo that pass
# it must not add up across pauses, so a shorter pause ends a sound there
CLEAR_MS_WITHOUT_AEC = 100
SPEECH_PROBABILITY = 0.5  # Silero's
SPEECH_MS = 140  # of it, this much Silero must call speech (a throat-clearing 'hm' is ~140 ms, a knock ~160 ms of 'speech' at most)


BargeInEvent = BargeIn | BargeInOnset | BargeInCleared


class BargeInDetector:
    def __init__(self, reference: EchoReference, wake: WakeDetector, *, vad: VoiceActivity | None = None,
                 speech: VoiceActivity | None = None, canceller: WebRtcEchoCanceller | None = None,
                 min_speech_ms: int = 200, threshold: float = 0.5):
        """``vad`` hears the onset and the voice; ``speech`` (Silero) confirms it is speech (``vad`` alone when None)."""
        self.reference = reference
        self.vad = vad
        self.speech = speech
        self.wake = wake
        self.canceller = canceller
        self.min_speech_ms = min_speech_ms
        self.threshold = threshold if canceller else max(threshold, DUCKED_THRESHOLD)
        self.clear_ms = CLEAR_MS if canceller else CLEAR_MS_WITHOUT_AEC
        self.speech_threshold = SPEECH_PROBABILITY if canceller else DUCKED_THRESHOLD
        self._played_levels: collections.deque[float] = collections.deque(maxlen=ECHO_TAIL_FRAMES)
        self._gains: collections.deque[float] = collections.deque(maxlen=GAIN_FRAMES)
        self._forget()

    def configure(self, agent: AgentConfig) -> None:
        """Live config: how long the user must talk over the reply."""
        self.min_speech_ms = agent.barge_in_min_speech_ms

    def start(self) -> None:
        """The agent starts replying: forget earlier speech and echo that is no longer playing."""
        self._forget()
        self.reference.clear()
        for vad in (self.vad, self.speech):
            if vad is not None:
                vad.reset()

    def _forget(self) -> None:
        self.span_ms = 0.0  # since the sound began, pauses included
        self.voice_ms = 0.0  # voice-like sound (the onset VAD) since it began
        self.speech_ms = 0.0  # of it, what the speech VAD confirmed
        self.quiet_ms = 0.0
        self.onset = False

    def process(self, frame: Frame) -> BargeInEvent | None:
        """Feed one mic frame (inline on the loop; ~0.2 ms AEC + VADs): an onset, a confirmed
        barge-in, or the all-clear after an onset that was not speech."""
        played = self.reference.take(len(frame.samples))
        clean = frame
        if self.canceller is not None:
            clean = Frame(self.canceller.process(frame.samples, played), frame.index, frame.audio_s, frame.t)
        if self.wake.process(frame) and self.wake.speaking:  # fed every frame (streaming features); armed while speaking
            self._forget()
            return BargeIn(t=frame.t, source="stop_word", speech_ms=1000.0)
        if self.vad is None:
            return None
        floor = SPEECH_FLOOR_RMS if self.canceller else SPEECH_FLOOR_RMS + self._expected_echo(frame, played)
        loud = rms(clean.samples) >= floor
        voice = self.vad.speech_probability(clean) >= self.threshold and loud
        speech = voice if self.speech is None else self.speech.speech_probability(clean) >= self.speech_threshold and loud
        step = 1000 * frame.duration_s
        self.span_ms += step if self.voice_ms else 0.0
        if not (voice or speech):
            self.quiet_ms += step
            if self.quiet_ms >= self.clear_ms and self.voice_ms:
                onset = self.onset
                self._forget()
                return BargeInCleared(t=frame.t) if onset else None
            return None
        self.quiet_ms = 0.0
        self.voice_ms += step
        self.speech_ms += step if speech else 0.0
        if self.voice_ms >= self.min_speech_ms and self.speech_ms >= SPEECH_MS:
            began = self.span_ms + step
            self._forget()
            return BargeIn(t=frame.t, source="vad", speech_ms=began)
        if not self.onset and self.voice_ms >= ONSET_MS:
            self.onset = True
            return BargeInOnset(t=frame.t)
        return None

    def _expected_echo(self, frame: Frame, played: np.ndarray) -> float:
        self._played_levels.append(rms(played))
        loudest = max(self._played_levels)
        if loudest > SPEECH_FLOOR_RMS:
            self._gains.append(rms(frame.samples) / loudest)
        gain = float(np.percentile(self._gains, 50)) if len(self._gains) >= GAIN_FRAMES // 4 else DUCK_RATIO
        return DUCK_MARGIN * gain * loudest


def create_barge_in(config: Config, reference: EchoReference, wake: WakeDetector) -> BargeInDetector:
    """From config: an onset VAD of its own and Silero to confirm (``agent.barge_in_vad``), the echo
    canceller (``agent.echo_cancel``), ``agent.barge_in_min_speech_ms``; ``wake`` is the daemon's one
    wake detector."""
    vad = speech = None
    if config.agent.barge_in_vad:
        vad = create_voice_activity(config)
        speech = SileroActivity(model_path("silero-vad", config.models_dir))
    return BargeInDetector(reference, wake, vad=vad, speech=speech, canceller=create_echo_canceller(config.agent.echo_cancel),
                           min_speech_ms=config.agent.barge_in_min_speech_ms, threshold=config.vad.threshold)
