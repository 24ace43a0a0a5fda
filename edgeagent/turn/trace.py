"""The per-turn trace: one record per turn, every duration from the same monotonic clock.

The schema is DESIGN.md's; it is what telemetry sinks (JSON lines, journal, MQTT) publish and
what ``fleet stats`` aggregates.  Text fields leave the device only with ``include_text``.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from edgeagent.llm.base import LlmError

Outcome = Literal["answered", "barged_in", "no_speech", "error"]
# what the user said or heard, and what a backend or exception said about it (a cloud error body may
# quote the prompt): published only with telemetry.include_text
TEXT_FIELDS = ("transcript", "reply", "heard_reply", "error_detail")


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class TurnTrace:
    device_id: str
    turn_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=utc_now_iso)
    wake_word: str | None = None
    wake_score: float | None = None
    speech_ms: float | None = None
    end_of_turn_ms: float | None = None  # true end of speech -> end-of-turn decision
    end_of_turn_reason: str | None = None  # silence | complete sentence | max_length
    end_of_speech_to_final_ms: float | None = None
    intent: str | None = None  # the intent that answered (no LLM: llm_backend "none")
    intent_slots: dict | None = None
    intent_confidence: float | None = None
    intent_match_ms: float | None = None
    actions: list | None = None  # what skills or tools did: [{"name", "done", "confirmed", "detail"}]
    speculative: bool = False  # the reply was started during the pause, held, and released at the end of turn
    speculations_discarded: int = 0  # held replies dropped unheard (the user talked on, or said something else)
    reply_start_ms: float | None = None  # true end of speech -> LLM request (before the end of turn when speculative)
    continued: int = 0  # the user went on after an end of turn, before the answer was heard: listened to again
    llm_backend: str | None = None
    llm_backend_reason: str | None = None
    llm_ttft_ms: float | None = None
    llm_tokens: int | None = None
    chunk_wait_ms: float | None = None  # first token -> first speakable chunk handed to TTS
    tts_first_chunk_ms: float | None = None
    ttfa_ms: float | None = None
    speak_ms: float | None = None
    barge_in: bool = False
    barge_in_stop_ms: float | None = None  # barge-in onset (the reply ducked) -> reply stopped
    barge_in_resumed: int = 0  # ducks for a sound that was not speech (a cough, a knock): the reply went on
    outcome: Outcome = "answered"
    error: str | None = None
    transcript: str | None = None
    reply: str | None = None
    heard_reply: str | None = None
    error_detail: str | None = None

    def to_dict(self, include_text: bool = False) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not include_text:
            for name in TEXT_FIELDS:
                data.pop(name)
        return data


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(summary for ``error``, detail for ``error_detail``): an LlmError's message is our own words;
    any other exception's message may carry text (a synthesizer quoting its input), so only its
    type goes into the summary."""
    if isinstance(exc, LlmError):
        return f"{type(exc).__name__}: {exc}", exc.detail
    return type(exc).__name__, str(exc) or None


def ms_between(start: float | None, end: float | None) -> float | None:
    """Milliseconds between two monotonic readings, or None if either is missing."""
    if start is None or end is None:
        return None
    return round((end - start) * 1000.0, 1)

