"""The built-in skills as OpenAI-style function tools for a cloud LLM.

A call runs the same skill a spoken command runs (``Skills.run`` on an ``IntentMatch`` built from
the arguments), so the model can do exactly what the speaker can, and its result tells the model
what really happened ("done": false and why); the spoken answer is then the model's.  Home
commands are given as an English sentence and go through the same templates as speech.
"""

from __future__ import annotations

import json
import time
from typing import Any

from edgeagent.events import ActionDone
from edgeagent.intents.matcher import IntentMatch, IntentMatcher
from edgeagent.intents.skills import Outcome, Skills
from edgeagent.llm.base import ToolCall


def _tool(name: str, description: str, properties: dict[str, Any] | None = None, required: tuple[str, ...] = ()):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties or {}, "required": list(required)}}}


SCHEMAS = [
    _tool("set_timer", "Start a countdown timer on this speaker; it rings when it ends.",
          {"seconds": {"type": "number", "description": "length in seconds"},
           "name": {"type": "string", "description": "optional name, e.g. pasta"}}, ("seconds",)),
    _tool("cancel_timer", "Cancel a running timer (by name, or the only one).", {"name": {"type": "string"}}),
    _tool("list_timers", "The running timers and alarms with the time left."),
    _tool("set_alarm", "Set an alarm at a clock time (24-hour) in the speaker's time zone.",
          {"hour": {"type": "integer", "minimum": 0, "maximum": 23},
           "minute": {"type": "integer", "minimum": 0, "maximum": 59}}, ("hour",)),
    _tool("get_time", "The current local time and date on this speaker."),
    _tool("set_volume", "Set this speaker's volume.", {"percent": {"type": "integer", "minimum": 0, "maximum": 100}},
          ("percent",)),
    _tool("home_command", "Send a home-control command (lights, climate, covers, media, scenes) to the home "
          "system, as a short English command such as 'turn on the kitchen lights'.",
          {"command": {"type": "string"}}, ("command",)),
]


class ToolError(ValueError):
    pass


class ToolBox:
    """``for_turn`` binds the tools to one turn (its id goes with home commands)."""

    schemas = SCHEMAS

    def __init__(self, skills: Skills, matcher: IntentMatcher):
        self.skills = skills
        self.matcher = matcher

    def for_turn(self, turn_id: str, user_text: str) -> "TurnTools":
        return TurnTools(self, turn_id, user_text)


class TurnTools:
    def __init__(self, box: ToolBox, turn_id: str, user_text: str):
        self.box, self.turn_id, self.user_text = box, turn_id, user_text
        self.schemas = box.schemas

    async def call(self, call: ToolCall) -> tuple[str, ActionDone]:
        """(JSON for the model, the event for the trace); a bad call is answered, never raised."""
        try:
            args = json.loads(call.arguments or "{}")
            if not isinstance(args, dict):
                raise ToolError("arguments must be a JSON object")
            match = self._match(call.name, args)
            outcome = await self.box.skills.run(match, self.turn_id, self.user_text)
        except (ToolError, ValueError, TypeError, KeyError) as exc:
            outcome = Outcome("", False, detail=f"bad call: {exc}")
            result = {"done": False, "error": str(exc)}
        else:
            result = {"done": outcome.done, "said": outcome.answer}
            if outcome.confirmed is not None:
                result["confirmed"] = outcome.confirmed
        event = ActionDone(t=time.monotonic(), name=f"tool:{call.name}", done=outcome.done,
                           confirmed=outcome.confirmed, detail=outcome.detail)
        return json.dumps(result), event

    def _match(self, name: str, args: dict[str, Any]) -> IntentMatch:
        def intent(intent_name: str, slots: dict[str, Any], text: str = "") -> IntentMatch:
            return IntentMatch(intent_name, slots, 1.0, text, "tool")

        if name == "set_timer":
            slots = {"seconds": float(args["seconds"])}
            if args.get("name"):
                slots["name"] = str(args["name"])[:40]
            return intent("HassStartTimer", slots)
        if name == "cancel_timer":
            return intent("HassCancelTimer", {"name": str(args["name"])[:40]} if args.get("name") else {})
        if name == "list_timers":
            return intent("HassTimerStatus", {})
        if name == "set_alarm":
            return intent("EdgeSetAlarm", {"hour": int(args["hour"]), "minute": int(args.get("minute", 0))})
        if name == "get_time":
            return intent("HassGetCurrentTime", {})
        if name == "set_volume":
            return intent("HassSetVolume", {"volume": int(args["percent"])}, "percent")
        if name == "home_command":
            match = self.box.matcher.match(str(args["command"])[:200])
            if match is None or match.source not in ("home", "custom"):
                raise ToolError(f"not a home command this speaker knows: {args['command']!r}")
            return match
        raise ToolError(f"no tool {name!r}")
