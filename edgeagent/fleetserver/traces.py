"""A telemetry payload -> one validated database row, or the reason it is refused.

The checks are the database's own limits and DESIGN.md's trace schema, made explicit here so a
bad trace is refused with a readable reason (stored in the rejects table) instead of failing a
whole batch inside the database: JSON object, a turn id, the publishing device's own id,
a timestamp with a time zone, a known outcome, finite non-negative durations, no NUL characters
(PostgreSQL text cannot hold them).  Fields the schema has no column for are kept as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

MAX_PAYLOAD = 64 * 1024
OUTCOMES = ("answered", "barged_in", "no_speech", "error")

# column -> kind; the order is the turns table's column order (migration 1) after turn_id,
# device_id, started_at, outcome.  Kinds: "text", "ms" (duration), "real", "int", "bool".
OPTIONAL: dict[str, str] = {
    "wake_word": "text", "wake_score": "real", "speech_ms": "ms", "end_of_turn_ms": "ms",
    "end_of_turn_reason": "text", "end_of_speech_to_final_ms": "ms", "llm_backend": "text",
    "llm_backend_reason": "text", "llm_ttft_ms": "ms", "llm_tokens": "int", "chunk_wait_ms": "ms",
    "tts_first_chunk_ms": "ms", "ttfa_ms": "ms", "speak_ms": "ms", "barge_in": "bool",
    "barge_in_stop_ms": "ms", "error": "text",
}
COLUMNS = ("turn_id", "device_id", "started_at", "outcome", *OPTIONAL, "extra")
_KNOWN = frozenset(COLUMNS)
_MAX_TEXT = 4000
_MAX_MS = 1e8  # a day and more: anything longer is a broken clock, not a turn
_MAX_INT = 2**31 - 1


class Rejected(ValueError):
    """The payload cannot be stored as a turn; ``str()`` is the reason kept in the rejects table."""


@dataclass(frozen=True)
class TurnRow:
    """One turn, in ``COLUMNS`` order; ``extra`` is JSON text of the fields without a column (or None)."""

    turn_id: str
    device_id: str
    started_at: datetime
    outcome: str
    optional: tuple[Any, ...]
    extra: str | None

    def values(self) -> tuple[Any, ...]:
        return (self.turn_id, self.device_id, self.started_at, self.outcome, *self.optional, self.extra)

    def get(self, column: str) -> Any:
        return self.optional[_INDEX[column]]


_INDEX = {name: n for n, name in enumerate(OPTIONAL)}


@dataclass
class Parsed:
    """One received message, parsed: exactly one of ``turn``, ``status`` and ``reason`` (rejected)."""

    topic: str
    payload: bytes
    device_id: str
    received_at: datetime
    turn: TurnRow | None = None
    status: str | None = None
    reason: str | None = None

    def reject(self, reason: str) -> None:
        self.turn, self.status, self.reason = None, None, reason


def parse_message(topic: str, payload: bytes, received_at: datetime | None = None) -> Parsed:
    """``<root>/<device>/telemetry/turn`` or ``<root>/<device>/status`` -> Parsed (never raises)."""
    parts = topic.split("/")
    device = parts[1] if len(parts) >= 3 else ""
    msg = Parsed(topic, payload, device, received_at or datetime.now(timezone.utc))
    try:
        if parts[2:] == ["telemetry", "turn"]:
            msg.turn = parse_turn(payload, device)
        elif parts[2:] == ["status"]:
            msg.status = parse_status(payload)
        else:
            raise Rejected("not a telemetry or status topic")
    except Rejected as exc:
        msg.reason = str(exc)
    return msg


def parse_turn(payload: bytes, topic_device: str) -> TurnRow:
    """The row for a ``{p}/telemetry/turn`` payload from ``topic_device``, or Rejected."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(f"payload too large ({len(payload)} bytes > {MAX_PAYLOAD})")
    if b"\\u0000" in payload:
        raise Rejected("payload contains a NUL character")
    try:
        trace = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(f"not JSON: {exc}") from None
    if not isinstance(trace, dict):
        raise Rejected(f"not a JSON object but {type(trace).__name__}")
    turn_id = _text(trace, "turn_id", required=True, limit=128)
    device_id = _text(trace, "device_id", required=True, limit=128)
    if device_id != topic_device:
        raise Rejected(f"device_id {device_id!r} does not match the topic's device {topic_device!r}")
    outcome = trace.get("outcome")
    if outcome not in OUTCOMES:
        raise Rejected(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    optional = tuple(_CHECKS[kind](trace, name) for name, kind in OPTIONAL.items())
    rest = {k: v for k, v in trace.items() if k not in _KNOWN}
    extra = None
    if rest:
        try:
            extra = json.dumps(rest, ensure_ascii=False, separators=(",", ":"))
            extra.encode()
        except (UnicodeEncodeError, ValueError) as exc:
            raise Rejected(f"unstorable text: {exc}") from None
    return TurnRow(turn_id, device_id, _started_at(trace), outcome, optional, extra)


def parse_status(payload: bytes) -> str:
    """``online`` / ``offline`` (the device's retained status and last will), or Rejected."""
    status = payload.strip().decode("utf-8", errors="replace")
    if status not in ("online", "offline"):
        raise Rejected(f"status {status[:40]!r} is not online or offline")
    return status


def _text(trace: dict, name: str, required: bool = False, limit: int = _MAX_TEXT) -> str | None:
    value = trace.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise Rejected(f"{name} must be {'a non-empty' if required else 'a'} string, not {value!r:.60}")
    if len(value) > limit:
        raise Rejected(f"{name} is longer than {limit} characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise Rejected(f"{name} is not valid Unicode (lone surrogate)") from None
    return value


def _number(trace: dict, name: str, low: float, high: float) -> float | None:
    value = trace.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value) or not low <= value <= high:
        raise Rejected(f"{name} must be a number from {low:g} to {high:g}, not {value!r:.60}")
    return float(value)


def _int(trace: dict, name: str) -> int | None:
    value = trace.get(name)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise Rejected(f"{name} must be a whole number from 0 to {_MAX_INT}, not {value!r:.60}")
    return value


def _bool(trace: dict, name: str) -> bool | None:
    value = trace.get(name)
    if value is not None and type(value) is not bool:
        raise Rejected(f"{name} must be true or false, not {value!r:.60}")
    return value


_CHECKS = {
    "text": _text,
    "ms": lambda t, n: _number(t, n, 0.0, _MAX_MS),
    "real": lambda t, n: _number(t, n, -1e9, 1e9),
    "int": _int,
    "bool": _bool,
}


def _started_at(trace: dict) -> datetime:
    raw = trace.get("started_at")
    if not isinstance(raw, str):
        raise Rejected(f"started_at must be an ISO 8601 time, not {raw!r:.60}")
    try:
        started = datetime.fromisoformat(raw)
    except ValueError:
        raise Rejected(f"started_at {raw[:40]!r} is not an ISO 8601 time") from None
    if started.tzinfo is None:
        raise Rejected(f"started_at {raw[:40]!r} has no time zone (devices send UTC, e.g. ...Z)")
    if not 2000 <= started.year <= 2200:
        raise Rejected(f"started_at {raw[:40]!r} is outside 2000..2200")
    return started.astimezone(timezone.utc)
