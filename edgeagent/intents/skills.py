"""The built-in skills: what a matched intent does on the device and what the agent then says.

Every answer reports only what happened: a timer is "set" once it is in the store, a home command
is "done" only when confirmed (``home.py``), a request that cannot be carried out gets a question
back ("How long should it run?") rather than a guess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from edgeagent.config import Config
from edgeagent.intents import clock
from edgeagent.intents.home import HomeControl
from edgeagent.intents.matcher import IntentMatch
from edgeagent.intents.timers import MAX_TIMER_S, Timer, TimerStore, say_duration

VOLUME_STEP = 0.1
VOLUME_INTENTS = ("HassSetVolume", "HassSetVolumeRelative", "HassMediaPlayerMute", "HassMediaPlayerUnmute")
RECENTLY_RUNG_S = 120.0  # "stop the timer" this soon after one rang means that one
CAPABILITIES = (
    "I can set timers and alarms, tell you how long is left, and cancel them; tell you the time and the date; "
    "change my volume or mute; and pass home commands like turning lights on or off to your home system."
)


@dataclass(frozen=True)
class Outcome:
    answer: str  # what the agent says ("" for nothing: "stop", "mute")
    done: bool  # the request was carried out (or the question answered)
    confirmed: bool | None = None  # home commands: a handler confirmed it; None: not a home command
    detail: str = ""  # for the trace: what was done, or why not


class Volume:
    """The speaker's level as a skill sees it: set, step, mute (remembering the level), and told to
    whoever reports it (the fleet's state)."""

    def __init__(self, speaker: Any, on_change: Callable[[float], None] = lambda level: None):
        self.speaker = speaker
        self.on_change = on_change
        self.before_mute: float | None = None

    @property
    def level(self) -> float:
        return float(self.speaker.volume)

    def set(self, level: float) -> float:
        level = round(min(1.0, max(0.0, level)), 2)
        self.before_mute = None
        self.speaker.set_volume(level)
        self.on_change(level)
        return level

    def mute(self) -> None:
        if self.before_mute is None:
            before = self.level
            self.set(0.0)
            self.before_mute = before

    def unmute(self) -> float:
        return self.set(self.before_mute if self.before_mute else max(self.level, 0.5))


class Skills:
    def __init__(self, config: Config, timers: TimerStore, volume: Volume | None, home: HomeControl,
                 on_timers_changed: Callable[[], None] = lambda: None):
        self.timers = timers
        self.volume = volume
        self.home = home
        self.on_timers_changed = on_timers_changed
        self.recently_rung: tuple[float, list[Timer]] = (0.0, [])
        self.configure(config)
        self._handlers: dict[str, Callable[[IntentMatch], Outcome]] = {
            "HassStartTimer": self.start_timer, "HassCancelTimer": self.cancel_timer,
            "HassCancelAllTimers": self.cancel_all_timers, "HassTimerStatus": self.timer_status,
            "EdgeSetAlarm": self.set_alarm, "EdgeCancelAlarm": self.cancel_alarm,
            "HassGetCurrentTime": self.current_time, "HassGetCurrentDate": self.current_date,
            "HassSetVolume": self.set_volume, "HassSetVolumeRelative": self.step_volume,
            "HassMediaPlayerMute": self.mute, "HassMediaPlayerUnmute": self.unmute,
            "HassNevermind": lambda match: Outcome("", True, detail="stopped"),
            "EdgeCapabilities": lambda match: Outcome(CAPABILITIES, True),
        }

    def configure(self, config: Config) -> None:
        self.tz = clock.zone(config.device.timezone)
        self.max_timers = config.intents.max_timers

    def now(self):
        return clock.local_now(self.tz, self.timers.clock)

    async def run(self, match: IntentMatch, turn_id: str, transcript: str) -> Outcome:
        handler = self._handlers.get(match.name)
        if handler is not None and self.volume is None and match.name in VOLUME_INTENTS:
            return Outcome("I can only change the volume of the running speaker.", False, detail="no speaker")
        if handler is not None:
            return handler(match)
        sent = await self.home.send(match, turn_id, transcript)
        return Outcome(sent.answer, sent.confirmed, sent.confirmed,
                       "confirmed" if sent.confirmed else "sent" if sent.delivered else "not sent")

    def rang(self, timers: list[Timer]) -> None:
        self.recently_rung = (time.monotonic(), timers)

    # ------------------------------------------------------------ timers and alarms

    def start_timer(self, match: IntentMatch) -> Outcome:
        seconds = duration_s(match.slots)
        if seconds is None or seconds <= 0:
            return Outcome("A timer needs a length above zero. How long should it run?", False, detail="bad duration")
        if seconds > MAX_TIMER_S:
            return Outcome(f"I can set timers of up to {say_duration(MAX_TIMER_S)}, not {say_duration(seconds)}. "
                           "How long should it run?", False, detail="too long")
        if (full := self._full()) is not None:
            return full
        name = str(match.slots.get("name", "")).strip().lower()
        timer = self.timers.add(Timer("timer", self.timers.clock() + seconds, seconds, name))
        self.on_timers_changed()
        what = f"{name.capitalize()} timer" if name else "Timer"
        return Outcome(f"{what} set for {say_duration(seconds)}.", True, detail=f"timer {timer.id}")

    def cancel_timer(self, match: IntentMatch) -> Outcome:
        seconds = duration_s(match.slots)
        found = self.timers.find(str(match.slots.get("name", "")), seconds)
        if not found:
            if time.monotonic() - self.recently_rung[0] < RECENTLY_RUNG_S:
                return Outcome("Okay.", True, detail="already rung")
            return Outcome("There's no such timer." if self.timers.active("timer") else "You have no timers.", False)
        if len(found) > 1:
            return Outcome(f"Which one? You have {_and([t.label() for t in found])}.", False, detail="ambiguous")
        self.timers.remove(found)
        self.on_timers_changed()
        return Outcome(f"Okay, I cancelled the {found[0].label()}.", True, detail=f"cancelled {found[0].id}")

    def cancel_all_timers(self, match: IntentMatch) -> Outcome:
        return self._cancel_all("timer")

    def _cancel_all(self, kind: str) -> Outcome:
        found = self.timers.active(kind)
        if not found:
            return Outcome(f"You have no {kind}s.", True)
        self.timers.remove(found)
        self.on_timers_changed()
        return Outcome(f"Okay, I cancelled your {kind}." if len(found) == 1 else f"Okay, I cancelled {len(found)} {kind}s.",
                       True, detail=f"cancelled {len(found)}")

    def timer_status(self, match: IntentMatch) -> Outcome:
        now, local = self.timers.clock(), self.now()
        name = str(match.slots.get("name", ""))
        timers = self.timers.find(name) if name else self.timers.active("timer")
        alarms = [] if name else self.timers.active("alarm")
        if not timers and not alarms:
            return Outcome(f"You have no {name} timer." if name else "You have no timers.", True)
        parts = [f"{'your ' if len(timers) == 1 else ''}{t.label()} has {say_duration(t.left_s(now))} left" for t in timers]
        parts += [f"an alarm at {clock.say_when(clock.local_now(self.tz, lambda: a.ends_at), local)}" for a in alarms]
        text = _and(parts)
        return Outcome(text[0].upper() + text[1:] + ".", True)

    def _full(self) -> Outcome | None:
        if len(self.timers.active()) < self.max_timers:
            return None
        return Outcome(f"You already have {self.max_timers} timers and alarms, the most I keep.", False, detail="too many")

    def set_alarm(self, match: IntentMatch) -> Outcome:
        hour, minute, period = int(match.slots["hour"]), int(match.slots.get("minute", 0)), match.slots.get("period")
        if period and not 1 <= hour <= 12:
            return Outcome(f"{hour} {period.upper()} is not a time. When should the alarm go off?", False, detail="bad time")
        if (full := self._full()) is not None:
            return full
        now = self.now()
        moment = clock.next_clock_time(now, hour, minute, period)
        self.timers.add(Timer("alarm", moment.timestamp()))
        self.on_timers_changed()
        return Outcome(f"Alarm set for {clock.say_when(moment, now)}.", True, detail=f"alarm {moment.isoformat()}")

    def cancel_alarm(self, match: IntentMatch) -> Outcome:
        return self._cancel_all("alarm")

    # ------------------------------------------------------------ time, date, volume

    def current_time(self, match: IntentMatch) -> Outcome:
        return Outcome(f"It's {clock.say_time(self.now())}.", True)

    def current_date(self, match: IntentMatch) -> Outcome:
        return Outcome(f"Today is {clock.say_date(self.now())}.", True)

    def set_volume(self, match: IntentMatch) -> Outcome:
        value = float(match.slots["volume"])
        # "volume 5" is five out of ten; "volume 50" and "5 percent" are percent
        level = value / 100 if "percent" in match.text.split() or value > 10 else value / 10
        level = self.volume.set(level)
        return Outcome(f"Volume {round(level * 100)} percent.", True)

    def step_volume(self, match: IntentMatch) -> Outcome:
        step = VOLUME_STEP if match.slots.get("volume_step") == "up" else -VOLUME_STEP
        base = self.volume.before_mute if self.volume.before_mute is not None else self.volume.level
        level = self.volume.set(base + step)
        return Outcome(f"Volume {round(level * 100)} percent.", True)

    def mute(self, match: IntentMatch) -> Outcome:
        self.volume.mute()
        return Outcome("", True, detail="muted")

    def unmute(self, match: IntentMatch) -> Outcome:
        level = self.volume.unmute()
        return Outcome(f"Sound is back on, at {round(level * 100)} percent.", True)


def duration_s(slots: dict[str, Any]) -> float | None:
    """The length a timer sentence names, in seconds (None: it names none); negative parts stay
    negative so the answer can say why it will not do."""
    if not any(k in slots for k in ("hours", "minutes", "seconds", "fixed")):
        return None
    hours, minutes, seconds = (float(slots.get(k, 0)) for k in ("hours", "minutes", "seconds"))
    if min(hours, minutes, seconds) < 0:
        return -1.0
    half = float(slots.get("half", 0))
    total = hours * 3600 + minutes * 60 + seconds + float(slots.get("fixed", 0))
    return total + (half * 3600 if "hours" in slots else half * 60 if half else 0)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

