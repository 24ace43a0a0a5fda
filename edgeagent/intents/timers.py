"""Timers and alarms that outlive the daemon: kept in ``<state_dir>/timers.json`` with their end
as wall-clock time, so a restart or a reboot finds them and one that ended meanwhile rings at start.

``TimerStore`` holds them (each change written atomically); ``TimerSchedule`` watches the clock
on the loop and hands due ones to ``ring`` (the turn controller's announcement) until one is
accepted, then drops them once they have rung.  The clock is injectable: tests script it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

log = logging.getLogger("edgeagent.intents.timers")

MAX_TIMER_S = 24 * 3600.0
POLL_S = 1.0  # a wall clock may jump (NTP after boot): look again at least this often


@dataclass(frozen=True)
class Timer:
    kind: Literal["timer", "alarm"]
    ends_at: float  # wall clock (epoch seconds): survives a reboot, unlike a monotonic reading
    duration_s: float = 0.0  # as asked for (timers); 0 for alarms
    name: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def left_s(self, now: float) -> float:
        return max(0.0, self.ends_at - now)

    def label(self) -> str:
        """How the user would name it: "pasta timer", "10 minute timer", "alarm"."""
        if self.kind == "alarm":
            return f"{self.name} alarm" if self.name else "alarm"
        return f"{self.name} timer" if self.name else f"{say_duration(self.duration_s, unit_form=True)} timer"


class TimerStore:
    """The timers in force, persisted on every change (write, fsync, rename)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.path = path
        self.clock = clock
        self.timers: list[Timer] = []
        self._seen: int | None = None  # the file's mtime as last read or written
        self.load()

    def refresh(self) -> None:
        """Reload if another process (``edgeagent ask``) changed the file since we last saw it."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._seen:
            self.load()

    def load(self) -> None:
        try:
            self._seen = self.path.stat().st_mtime_ns
            data = json.loads(self.path.read_text())
            self.timers = [Timer(**item) for item in data["timers"]]
        except FileNotFoundError:
            self.timers, self._seen = [], None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("timers: ignoring unreadable %s: %s", self.path, exc)
            self.timers = []

    def save(self, timers: list[Timer]) -> None:
        """On disk first, then in force: a timer that could not be kept is not set (OSError)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"timers": [asdict(t) for t in timers]}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self.timers, self._seen = timers, self.path.stat().st_mtime_ns

    def add(self, timer: Timer) -> Timer:
        self.save([*self.timers, timer])
        return timer

    def remove(self, timers: list[Timer]) -> None:
        ids = {t.id for t in timers}
        self.save([t for t in self.timers if t.id not in ids])

    def active(self, kind: str | None = None) -> list[Timer]:
        """Not yet ended, soonest first."""
        now = self.clock()
        return sorted((t for t in self.timers if t.ends_at > now and (kind is None or t.kind == kind)),
                      key=lambda t: t.ends_at)

    def due(self) -> list[Timer]:
        now = self.clock()
        return sorted((t for t in self.timers if t.ends_at <= now), key=lambda t: t.ends_at)

    def find(self, name: str = "", duration_s: float | None = None, kind: str = "timer") -> list[Timer]:
        """Active timers by name (fuzzy-free: the name as heard) or by the length they were set for."""
        timers = self.active(kind)
        if name:
            timers = [t for t in timers if t.name == name.strip().lower()]
        if duration_s is not None:
            timers = [t for t in timers if abs(t.duration_s - duration_s) < 0.5]
        return timers


class TimerSchedule:
    """Hands due timers to ``ring`` (False: the agent is busy, try again shortly); once they have
    rung (or rung out), ``rung`` drops them from the store."""

    def __init__(self, store: TimerStore, ring: Callable[[list[Timer]], bool],
                 on_running: Callable[[list[Timer]], None] = lambda timers: None):
        self.store = store
        self.ring = ring
        self.on_running = on_running  # the running timers, whenever they change (the kiosk's screen shows them)
        self.ringing: set[str] = set()
        self._changed = asyncio.Event()
        self._shown: tuple | None = None

    def changed(self) -> None:
        """A timer was added or removed: look again now."""
        self._changed.set()

    def check(self) -> list[Timer]:
        """Offer what is due and not yet ringing; returns what started ringing."""
        self.store.refresh()
        due = [t for t in self.store.due() if t.id not in self.ringing]
        if due and self.ring(due):
            self.ringing.update(t.id for t in due)
            return due
        return []

    def rung(self, timers: list[Timer]) -> None:
        self.ringing.difference_update(t.id for t in timers)
        self.store.remove(timers)

    async def run(self) -> None:
        """Until cancelled: wake at the next end (or every POLL_S), offer what is due, and tell
        ``on_running`` when the running timers changed (set, cancelled, ended, edited elsewhere)."""
        while True:
            try:
                self.check()
            except Exception:  # a timers file that cannot be written must not stop the clock
                log.exception("timers: check failed")
            active = self.store.active()
            shown = tuple((t.id, t.ends_at) for t in active)
            if shown != self._shown:
                self._shown = shown
                self.on_running(active)
            delay = POLL_S if not active else min(POLL_S, active[0].left_s(self.store.clock()))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.01, delay))


def say_duration(seconds: float, unit_form: bool = False) -> str:
    """3600 -> "1 hour", 5400 -> "1 hour and 30 minutes", 90 -> "1 minute and 30 seconds";
    ``unit_form``: "10 minute" (as in "10 minute timer")."""
    seconds = int(round(seconds))
    parts = []
    for unit, size in (("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}" + ("" if count == 1 or unit_form else "s"))
    if not parts:
        return "0 seconds"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
