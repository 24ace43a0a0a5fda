"""The device's clock in its configured time zone, and how the agent says times and dates."""

from __future__ import annotations

import time
import zoneinfo
from datetime import datetime, timedelta, tzinfo


def zone(name: str) -> tzinfo | None:
    """``device.timezone``; empty: the system's local zone (None lets datetime use it)."""
    return zoneinfo.ZoneInfo(name) if name else None


def local_now(tz: tzinfo | None, clock=time.time) -> datetime:
    return datetime.fromtimestamp(clock(), tz).astimezone(tz) if tz else datetime.fromtimestamp(clock()).astimezone()


def say_time(moment: datetime) -> str:
    """9:05 PM (what piper reads as "nine oh five PM")."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def say_date(moment: datetime) -> str:
    return f"{moment:%A}, {moment:%B} {moment.day}, {moment.year}"


def next_clock_time(now: datetime, hour: int, minute: int, period: str | None) -> datetime:
    """The next moment at hour:minute (an "am"/"pm" fixes the half of the day; without one, a
    12-hour reading is whichever of its two times comes first)."""
    if period == "pm" and hour < 12:
        hour += 12
    elif period == "am" and hour == 12:
        hour = 0
    candidates = [hour] if period or hour > 12 or hour == 0 else [hour % 12, hour % 12 + 12]
    best = None
    for h in candidates:
        moment = now.replace(hour=h, minute=minute, second=0, microsecond=0)
        if moment <= now:
            moment += timedelta(days=1)
        best = moment if best is None or moment < best else best
    return best  # type: ignore[return-value]


def say_when(moment: datetime, now: datetime) -> str:
    """7:30 AM today / tomorrow."""
    day = "today" if moment.date() == now.date() else "tomorrow" if moment.date() == (now + timedelta(days=1)).date() \
        else f"on {moment:%A}"
    return f"{say_time(moment)} {day}"
