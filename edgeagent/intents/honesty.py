"""Keeping the LLM honest about what the device did.

The LLM is told what the device really can do (``LIMITS``, after the system prompt) and the date and
time (``time_note``, a system note before the user's words), and
every spoken chunk of its answer is vetted (``ClaimVet``): a sentence in which the agent claims
an action ("I've set a timer", "the lights are now on") is replaced unless a tool really ran in
this answer.  A small local model cannot be trusted to follow the prompt alone; the vet is a
plain pattern check, deliberately narrow (first-person actions and "is set/on/off" states).
"""

from __future__ import annotations

import re
from datetime import datetime
from edgeagent.intents import clock

UNDONE = "I can't do that from here. Ask me directly, for example: set a timer for ten minutes."
_ACTION_VERBS = (r"set|started|start|created|scheduled|turned|switched|dimmed|brightened|locked|unlocked|opened|"
                 r"closed|muted|unmuted|adjusted|raised|lowered|increased|decreased|cancel+ed|activated|"
                 r"deactivated|sent|added|removed|played|paused|stopped")
_CLAIMS = re.compile(
    rf"\b(i\s*(?:'ve|have|had|just|already|now)?\s*(?:just\s+|already\s+)?(?:{_ACTION_VERBS})\b"
    r"|i(?:'ll|\s+will)\s+(?:now\s+)?(?:set|start|create|schedule|turn|switch|dim|lock|unlock|open|close|mute|"
    r"cancel|send|add|remove|play|pause|stop|activate)\b"
    r"|(?:timer|alarm|reminder)s?\s+(?:is|are|has been|have been)\s+(?:now\s+)?(?:set|started|on|running)"
    r"|(?:light|lights|lamp|heating|thermostat|tv|fan|music|volume)\s+(?:is|are|has been|have been)\s+(?:now\s+)?"
    r"(?:on|off|set|turned|switched|dimmed|muted|up|down)\b"
    r"|^\W*(?:done|all done|all set)\b)",
    re.IGNORECASE,
)


def claims_action(text: str) -> bool:
    return bool(_CLAIMS.search(text.replace("\u2019", "'")))


class ClaimVet:
    """One answer's vet: ``acted`` is set when a tool really did something (then claims may stand)."""

    def __init__(self) -> None:
        self.acted = False
        self.replaced = 0

    def __call__(self, chunk: str) -> str:
        if self.acted or not claims_action(chunk):
            return chunk
        self.replaced += 1
        return UNDONE if self.replaced == 1 else ""


LIMITS = (" This speaker itself sets timers and alarms, tells the time, changes its volume and sends home"
          " commands when the user says such a command; you cannot do any of it. Never say you did something"
          " or that something is set, on or off; say you can't do it from here.")


def time_note(now: datetime) -> str:
    """A short system note just before the user's words: the one part of the prompt that changes, kept
    last so the model's cached prefix (system prompt, history) stays valid from turn to turn."""
    return f"It is now {clock.say_time(now)} on {clock.say_date(now)} ({now.tzname() or 'local time'})."
