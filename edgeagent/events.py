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
    word: str  # the model's name
    score: float
    audio_s: float = 0.0
    phrase: str = ""  # what the user says ("Okay Nabu"), from the model's metadata


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
class BargeIn(Event):
    """The user interrupts the reply: it stops for good."""

    source: str  # stop_word | vad
    speech_ms: float = 0.0  # how long ago the interrupting sound began (the next turn listens from there)


@dataclass(frozen=True)
class BargeInOnset(Event):
    """Someone may be talking over the reply: it ducks until BargeIn or BargeInCleared."""


@dataclass(frozen=True)
class BargeInCleared(Event):
    """The sound that ducked the reply was not speech (a cough, a knock, the echo): full level again."""


@dataclass(frozen=True)
class MicrophoneStatus(Event):
    """The microphone opened (``ok``), or is missing / was lost and is being retried (``detail``)."""

    ok: bool
    detail: str = ""


# ---------------------------------------------------------------- the LLM router -> the reply path


@dataclass(frozen=True)
class LlmRouted(Event):
    """The router picked ``backend`` (``t``: the request went out), or failed over to it mid-turn."""

    backend: str
    reason: str
    detail: str | None = None  # what a failed backend said (may quote the user): text, like a transcript


@dataclass(frozen=True)
class LlmToken(Event):
    text: str
    backend: str


# ---------------------------------------------------------------- the reply path -> the turn controller
# One reply reports, in order: LlmRouted (one, or two after a failover), FirstToken, ChunkQueued per
# speakable chunk, FirstSynth, FirstAudio, Spoken as playback goes on, Heard, then exactly one of
# ReplyDone / ReplyFailed.  A reply answered by an intent instead reports IntentMatched and ActionDone
# before ChunkQueued; an LLM answer that ran a tool reports ActionDone for it.


@dataclass(frozen=True)
class IntentMatched(Event):
    """The transcript matched an intent template: no LLM in this turn."""

    name: str
    slots: dict
    confidence: float  # 1.0: matched word for word; less: misheard words were corrected
    match_ms: float
    source: str  # builtin | custom | home


@dataclass(frozen=True)
class ActionDone(Event):
    """A skill or a home command ran: ``done`` only if it really happened (a home command: confirmed)."""

    name: str
    done: bool
    confirmed: bool | None = None  # home commands: a handler confirmed it in time; None: not a home command
    detail: str = ""


@dataclass(frozen=True)
class FirstToken(Event):
    backend: str


@dataclass(frozen=True)
class ChunkQueued(Event):
    """A speakable piece of the reply was handed to the synthesizer."""

    text: str
    index: int


@dataclass(frozen=True)
class FirstSynth(Event):
    """The synthesizer produced the reply's first audio."""


@dataclass(frozen=True)
class FirstAudio(Event):
    """The reply's first sample reached the speaker (``t``: when it started playing)."""


@dataclass(frozen=True)
class Spoken(Event):
    """Captions: the reply's words the listener has heard so far, following playback (not generation):
    the sentence being played is revealed word by word as its audio plays.  ``stopped``: the voice
    was cut off here (barge-in, cancel), so this is where the caption ends."""

    text: str
    played_ms: float
    stopped: bool = False


@dataclass(frozen=True)
class Heard(Event):
    """What the user actually heard: the reply up to ``text`` and ``played_ms`` of audio."""

    text: str
    played_ms: float
    cancelled: bool


@dataclass(frozen=True)
class ReplyDone(Event):
    """The reply ended (spoken in full, or cancelled: ``cancelled``); ``text`` is what was generated.
    ``discarded``: a held (speculative) reply cancelled before it was released, never heard."""

    text: str
    tokens: int
    cancelled: bool = False
    discarded: bool = False


@dataclass(frozen=True)
class ReplyFailed(Event):
    """The reply could not be made (no LLM answered, the synthesizer failed); ``error`` says why."""

    error: str
    text: str = ""
    tokens: int = 0
    detail: str | None = None  # the failure's own message (may quote the user): text, like a transcript


ReplyEvent = (LlmRouted | IntentMatched | ActionDone | FirstToken | ChunkQueued | FirstSynth | FirstAudio | Spoken
              | Heard | ReplyDone | ReplyFailed)


# ---------------------------------------------------------------- skills -> whoever shows them (the kiosk's screen)


@dataclass(frozen=True)
class RunningTimer:
    id: str
    label: str  # as the user would name it: "pasta timer", "10 minute timer", "alarm"
    ends_at: float  # wall clock (epoch seconds): a screen counts down to it, a reboot does not move it


@dataclass(frozen=True)
class TimersChanged(Event):
    """The timers and alarms now running, soonest first; published by the timers skill on every change."""

    timers: tuple[RunningTimer, ...] = ()
