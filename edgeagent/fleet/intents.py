"""Home-control intents over MQTT: the event on ``{p}/intent`` and the confirmation that may come back.

Each event carries an ``id`` and is published with MQTT 5 properties (response topic
``{p}/intent/response``, correlation data = the id).  A handler confirms by publishing
``{"ok": true}`` (optionally ``"speech"``, or ``"ok": false`` with ``"error"``) to the response
topic with that correlation data, or with ``"id"`` in the JSON (Home Assistant's ``mqtt.publish``
cannot set MQTT 5 properties).  ``IntentRequests`` pairs answers with the waiting turn; anything
else on the topic (late, unknown, malformed) is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 4096
MAX_SPEECH_CHARS = 300


@dataclass(frozen=True)
class IntentResponse:
    ok: bool
    speech: str = ""  # what the handler wants said (e.g. the temperature it read)
    error: str = ""


def parse_response(payload: bytes, correlation: bytes | None) -> tuple[str, IntentResponse] | None:
    """(request id, response) from a response message; None when it is not one."""
    if len(payload) > MAX_RESPONSE_BYTES:
        return None
    try:
        body = json.loads(payload) if payload.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    request = correlation.decode(errors="replace") if correlation else body.get("id")
    if not isinstance(request, str) or not isinstance(body.get("ok", True), bool):
        return None
    speech, error = body.get("speech", ""), body.get("error", "")
    return request, IntentResponse(ok=body.get("ok", True),
                                   speech=speech[:MAX_SPEECH_CHARS] if isinstance(speech, str) else "",
                                   error=error[:MAX_SPEECH_CHARS] if isinstance(error, str) else "")


class IntentRequests:
    """Turns waiting for a confirmation, by request id; resolved from the MQTT network thread."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}

    def expect(self, request: str) -> asyncio.Future:
        """Call on the loop before publishing; the future gets the IntentResponse."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting[request] = (loop, future)
        future.add_done_callback(lambda _f: self._waiting.pop(request, None))
        return future

    def handle(self, payload: bytes, correlation: bytes | None) -> bool:
        """A message on the response topic (any thread); True when it answered a waiting turn."""
        parsed = parse_response(payload, correlation)
        if parsed is None:
            log.info("fleet: ignored a malformed intent response")
            return False
        request, response = parsed
        waiting = self._waiting.get(request)
        if waiting is None:
            return False
        loop, future = waiting
        loop.call_soon_threadsafe(lambda: future.done() or future.set_result(response))
        return True


def event_body(request: str, turn_id: str, device_id: str, name: str, slots: dict[str, Any], confidence: float,
               text: str | None, at: str) -> dict[str, Any]:
    """The ``{p}/intent`` document (``event_type`` is what Home Assistant's MQTT event entity reads)."""
    body = {"event_type": name, "id": request, "turn_id": turn_id, "device_id": device_id, "name": name,
            "slots": slots, "confidence": confidence, "at": at}
    if text is not None:
        body["text"] = text
    return body
