"""Home control: an intent the device does not handle itself goes out on ``{p}/intent``, and the
answer says what really happened: done only when a handler confirmed it in time, otherwise that
it was sent (or could not be), never that it was done when nobody answered."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from edgeagent.fleet.intents import IntentResponse, event_body
from edgeagent.intents.matcher import IntentMatch
from edgeagent.turn.trace import utc_now_iso

PLURAL = {"light": "lights", "fan": "fans", "cover": "covers", "switch": "switches", "media_player": "speakers",
          "climate": "heating", "vacuum": "vacuum", "lock": "locks", "valve": "valves"}


class IntentChannel(Protocol):
    """The fleet link's side (``FleetLink``): publish an event, route responses to ``intent_requests``."""

    intent_requests: Any

    @property
    def connected(self) -> bool: ...

    def publish_intent(self, body: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class Sent:
    answer: str
    confirmed: bool
    delivered: bool
    request_id: str = ""


def describe(match: IntentMatch) -> tuple[str, str]:
    """("turn on the kitchen lights", "the kitchen lights are on"): the request and its confirmed state."""
    slots = match.slots
    domain = slots.get("domain")
    what = slots.get("name") or " ".join(filter(None, (slots.get("area"), PLURAL.get(domain, domain) if domain else None)))
    target = f"the {what}" if what else "that"
    plural = not slots.get("name") and bool(domain)
    verb = {"HassTurnOn": ("turn on", "on"), "HassTurnOff": ("turn off", "off")}.get(match.name)
    if verb is not None:
        return f"{verb[0]} {target}", f"{target} {'are' if plural else 'is'} {verb[1]}"
    if match.name == "HassLightSet" and "brightness" in slots:
        return f"set {target} to {slots['brightness']} percent", f"{target} {'are' if plural else 'is'} at {slots['brightness']} percent"
    if match.name == "HassClimateSetTemperature" and "temperature" in slots:
        return f"set the temperature to {slots['temperature']} degrees", f"the temperature is set to {slots['temperature']} degrees"
    return f'do "{match.text}"', "it's done"


class HomeControl:
    def __init__(self, device_id: str, include_text: bool = False, confirm_timeout_s: float = 2.0):
        self.device_id = device_id
        self.include_text = include_text
        self.confirm_timeout_s = confirm_timeout_s
        self.channel: IntentChannel | None = None  # the fleet link, when MQTT is enabled

    def configure(self, confirm_timeout_s: float, include_text: bool) -> None:
        self.confirm_timeout_s, self.include_text = confirm_timeout_s, include_text

    async def send(self, match: IntentMatch, turn_id: str, transcript: str) -> Sent:
        request, state = describe(match)
        channel = self.channel
        if channel is None:
            return Sent(f"I can't {request}: I'm not connected to a home system.", False, False)
        if not channel.connected:
            return Sent(f"I can't reach your home system right now, so I did not {request}.", False, False)
        request_id = uuid.uuid4().hex
        waiting = channel.intent_requests.expect(request_id)
        body = event_body(request_id, turn_id, self.device_id, match.name, match.slots, match.confidence,
                          transcript if self.include_text else None, utc_now_iso())
        if not channel.publish_intent(body):
            waiting.cancel()
            return Sent(f"I can't reach your home system right now, so I did not {request}.", False, False)
        try:
            response: IntentResponse = await asyncio.wait_for(waiting, self.confirm_timeout_s)
        except asyncio.TimeoutError:
            return Sent(f"I sent the request to {request}, but nothing has confirmed it yet.", False, True, request_id)
        if not response.ok:
            why = f": {response.error}" if response.error else "."
            return Sent(f"Your home system could not {request}{why}", False, True, request_id)
        return Sent(response.speech or f"Done, {state}.", True, True, request_id)
