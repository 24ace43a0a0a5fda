"""The event vocabulary shared by every pipeline stage.

Events are frozen dataclasses so a stage can hand them on without copying and no later stage
can change what an earlier one saw.  Every ``t`` is a ``time.monotonic()`` reading, the one
clock traces are computed on; ``audio_s`` (where present) is the position in the input audio,
which is what a user of ``listen``/``transcribe`` on a file wants to see.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AgentState(str, enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    THINKING = "thinking"
    SPEAKING = "speaking"


@dataclass(frozen=True)
class Event:
    t: float


@dataclass(frozen=True)
class StateChanged(Event):
    old: AgentState
    new: AgentState
    reason: str = ""


@dataclass(frozen=True)
class WakeDetected(Event):
    word: str
    score: float
    audio_s: float = 0.0


@dataclass(frozen=True)
class SpeechStarted(Event):
    audio_s: float = 0.0


@dataclass(frozen=True)
class SpeechEnded(Event):
    """End of turn decided: ``audio_s`` is where speech really stopped, ``t`` when we knew."""

    audio_s: float = 0.0
    speech_ms: float = 0.0
    reason: str = "silence"  # silence | max_length


@dataclass(frozen=True)
class NoSpeech(Event):
    """The wake word (or a follow-up window) was not followed by speech in time."""


@dataclass(frozen=True)
class TranscriptPartial(Event):
    text: str


@dataclass(frozen=True)
class TranscriptFinal(Event):
    text: str
    confidence: float | None = None
    engine: str = ""


@dataclass(frozen=True)
class LlmToken(Event):
    text: str
    backend: str


@dataclass(frozen=True)
class LlmDone(Event):
    backend: str
    tokens: int
    reason: str = ""  # why this backend answered


@dataclass(frozen=True)
class SentenceChunk(Event):
    text: str
    index: int


@dataclass(frozen=True)
class TtsAudio(Event):
    """A block of synthesized speech (int16 mono at ``sample_rate``) for one chunk of text."""

    pcm: bytes
    sample_rate: int
    text: str


@dataclass(frozen=True)
class PlaybackStarted(Event):
    pass


@dataclass(frozen=True)
class PlaybackFinished(Event):
    """What the user actually heard: the reply up to ``played_text`` and ``played_ms`` of audio."""

    played_ms: float
    played_text: str
    cancelled: bool


@dataclass(frozen=True)
class BargeIn(Event):
    source: str  # stop_word | vad


@dataclass(frozen=True)
class TurnError(Event):
    stage: str
    message: str
