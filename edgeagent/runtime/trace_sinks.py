"""Where finished turn traces go: a JSON-lines file, the log/journal, and (when enabled) MQTT.

Sinks must be cheap: the controller calls them at the end of every turn on the event loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

from edgeagent.config import TelemetryConfig
from edgeagent.turn.trace import TurnTrace

log = logging.getLogger("edgeagent.turn.trace")


class TraceSink(Protocol):
    def publish_trace(self, trace: TurnTrace) -> None: ...

    def configure(self, telemetry: TelemetryConfig) -> None:
        """Live config: whether transcripts and replies go out (``include_text``)."""
        ...

    def close(self) -> None: ...


class JsonlTraceSink:
    """Appends one JSON object per turn; flushed per line so a crash loses at most the turn in flight."""

    def __init__(self, path: str | Path, include_text: bool = False, pinned: bool = False):
        """``pinned``: the operator chose ``include_text`` for this file; live config leaves it alone."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.include_text = include_text
        self.pinned = pinned
        self._file = self.path.open("a", encoding="utf-8")

    def configure(self, telemetry: TelemetryConfig) -> None:
        if not self.pinned:
            self.include_text = telemetry.include_text

    def publish_trace(self, trace: TurnTrace) -> None:
        self._file.write(json.dumps(trace.to_dict(self.include_text), separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class LogTraceSink:
    """One log record per turn with structured fields (TURN_ID, OUTCOME, TTFA_MS) for journald."""

    def __init__(self, include_text: bool = False):
        self.include_text = include_text

    def configure(self, telemetry: TelemetryConfig) -> None:
        self.include_text = telemetry.include_text

    def publish_trace(self, trace: TurnTrace) -> None:
        log.info(
            "turn %s %s ttfa=%sms backend=%s",
            trace.turn_id[:8], trace.outcome, trace.ttfa_ms, trace.llm_backend,
            extra={"TURN_ID": trace.turn_id, "STAGE": "turn", "OUTCOME": trace.outcome,
                   "TTFA_MS": trace.ttfa_ms, "TRACE": json.dumps(trace.to_dict(self.include_text))},
        )

    def close(self) -> None:
        pass


class TraceFanout:
    """Publishes to every sink; one failing sink never stops the others or the turn."""

    def __init__(self, sinks: list[TraceSink]):
        self.sinks = sinks

    def publish_trace(self, trace: TurnTrace) -> None:
        for sink in self.sinks:
            try:
                sink.publish_trace(trace)
            except Exception:  # telemetry must never take the voice loop down
                log.exception("trace sink %s failed", type(sink).__name__)

    def configure(self, telemetry: TelemetryConfig) -> None:
        for sink in self.sinks:
            sink.configure(telemetry)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
