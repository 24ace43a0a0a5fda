"""Voice activity and end-of-turn: the contract every VAD engine and the endpointer implement.

A ``VoiceActivity`` scores single frames; the ``Endpointer`` turns those scores into
SpeechStarted / SpeechEnded / NoSpeech decisions with min-speech, trailing-silence,
max-length and no-speech timeouts, and keeps pre-roll so the first syllable is not lost.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgeagent.audio.frames import Frame
from edgeagent.events import Event


class VoiceActivity(Protocol):
    def speech_probability(self, frame: Frame) -> float:
        """0..1 for one frame; cheap enough to call inline on the event loop."""
        ...

    def reset(self) -> None: ...


class Endpointer(Protocol):
    def begin(self, frame: Frame) -> None:
        """Start listening for an utterance (after the wake word or in a follow-up window)."""
        ...

    def process(self, frame: Frame) -> list[Event]:
        """SpeechStarted, SpeechEnded or NoSpeech events decided on this frame."""
        ...

    def preroll(self) -> np.ndarray:
        """Audio from just before speech start (int16, 16 kHz), to feed STT first."""
        ...
