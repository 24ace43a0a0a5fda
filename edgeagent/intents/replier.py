"""The turn controller's replier: intents first, the LLM for everything else.

``answer`` matches the transcript (a few milliseconds, no side effect); a match becomes a Reply
that runs the skill and speaks its answer, reporting IntentMatched and ActionDone for the trace;
anything else is the LLM reply of ``ReplyPipeline``.  Timers that end ring through the
controller (``announce``), like a remote ``say``: never over a turn in progress, stopped by the
stop word or a barge-in like any reply.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Callable, Protocol

from edgeagent.audio.sound import Sound
from edgeagent.config import Config
from edgeagent.events import ActionDone, Event, IntentMatched, RunningTimer, TimersChanged
from edgeagent.intents import clock
from edgeagent.intents.chime import chime
from edgeagent.intents.matcher import IntentMatch, IntentMatcher
from edgeagent.intents.skills import Outcome, Skills
from edgeagent.intents.timers import Timer, TimerSchedule
from edgeagent.turn.reply import Emit, Reply, ReplyPipeline, unheard

log = logging.getLogger("edgeagent.intents")

FAILED = "Sorry, I couldn't do that."
LATE_S = 60.0  # a timer that ended longer ago than this (the device was off) says when it ended


class Announcer(Protocol):
    def announce(self, text: str, reply=None) -> bool: ...


class IntentReplier:
    def __init__(self, pipeline: ReplyPipeline, matcher: IntentMatcher, skills: Skills, config: Config,
                 on_event: Callable[[Event, str], None] = lambda event, turn_id: None):
        self.pipeline = pipeline
        self.matcher = matcher
        self.skills = skills
        self.controller: Announcer | None = None  # set once the controller exists (it takes this replier)
        self.on_event = on_event  # TimersChanged for whoever shows them (the kiosk's screen)
        self.schedule = TimerSchedule(skills.timers, self._ring, on_running=self._show_timers)
        skills.on_timers_changed = self.schedule.changed
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Live config: the ``intents`` section (and the time zone the skills speak in)."""
        self.enabled, self.ring_s = config.intents.enabled, config.intents.ring_s
        self.matcher.configure(config.intents)
        self.skills.configure(config)
        self.skills.home.configure(config.intents.confirm_timeout_s, config.telemetry.include_text)

    def match(self, transcript: str) -> IntentMatch | None:
        """The intent a transcript would run, without running it (None: it goes to the LLM)."""
        return self.matcher.match(transcript) if self.enabled else None

    def answer(self, user_text: str, turn_id: str = "", *, held: bool = False) -> Reply:
        """``held`` (a speculative reply): the skill runs only once the reply is released, so an
        end of turn that was not one never sets a timer or switches a light."""
        match = self.match(user_text)
        if match is None:
            return self.pipeline.answer(user_text, turn_id, held=held)
        log.info("intent %s %s (%.1f ms, confidence %.2f)", match.name, match.slots, match.match_ms, match.confidence)
        return self.pipeline.reply(lambda emit, gate: self._act(match, user_text, turn_id, emit, gate), "intent", held)

    def announce(self, text: str) -> Reply:
        return self.pipeline.announce(text)

    async def run_timers(self) -> None:
        """The timers' clock, until cancelled (the daemon's background task)."""
        await self.schedule.run()

    async def _act(self, match: IntentMatch, user_text: str, turn_id: str, emit: Emit, gate: asyncio.Event) -> None:
        try:
            await gate.wait()  # open at once unless held: then only once the end of turn is confirmed
        except asyncio.CancelledError:
            unheard(emit)  # discarded before it did anything
            raise
        emit(IntentMatched(t=time.monotonic(), name=match.name, slots=match.slots, confidence=match.confidence,
                           match_ms=match.match_ms, source=match.source))
        try:
            outcome = await self.skills.run(match, turn_id, user_text)
        except Exception as exc:  # a broken skill (a full disk) is said and traced, never a hung turn
            log.exception("intent %s failed", match.name)
            outcome = Outcome(FAILED, False, detail=f"{type(exc).__name__}: {exc}")
        emit(ActionDone(t=time.monotonic(), name=match.name, done=outcome.done, confirmed=outcome.confirmed,
                        detail=outcome.detail))
        await self.pipeline.say(outcome.answer, emit, user_text=user_text)

    def _show_timers(self, timers: list[Timer]) -> None:
        running = tuple(RunningTimer(t.id, t.label(), t.ends_at) for t in timers)
        self.on_event(TimersChanged(t=time.monotonic(), timers=running), "")

    # ------------------------------------------------------------ ringing

    def _ring(self, timers: list[Timer]) -> bool:
        controller = self.controller
        if controller is None:
            return False
        text = self._ring_text(timers)
        return controller.announce(text, reply=lambda: self.ring(timers, text))

    def ring(self, timers: list[Timer], text: str) -> Reply:
        """Say which timers ended, then chime until stopped (barge-in, stop word) or ``ring_s`` passed."""
        async def produce(emit: Emit) -> None:
            volume = self.skills.volume
            muted = volume.before_mute
            if muted is not None:  # a muted speaker still rings: an alarm nobody hears is no alarm
                volume.speaker.set_volume(muted)
            try:
                await self.pipeline.play(self._ringing(text), emit, made=lambda: (text, 0))
            finally:
                if muted is not None and volume.before_mute is not None:
                    volume.speaker.set_volume(0.0)
                self.schedule.rung(timers)
                self.skills.rang(timers)

        return self.pipeline.reply(lambda emit, gate: produce(emit), "ring")

    async def _ringing(self, text: str) -> AsyncIterator[str | Sound]:
        yield text
        speaker = self.pipeline.speaker
        sound = chime(speaker.rate)
        period = len(sound.samples) / sound.rate
        end = time.monotonic() + self.ring_s
        while time.monotonic() < end:
            yield sound
            while speaker.backlog_s > period:  # about one chime ahead, not minutes of them
                await asyncio.sleep(0.1)

    def _ring_text(self, timers: list[Timer]) -> str:
        now, tz = self.skills.timers.clock(), self.skills.tz
        alarms = [t for t in timers if t.kind == "alarm"]
        ended = [t for t in timers if t.kind == "timer"]
        parts = []
        if ended:
            labels = [t.label() for t in ended]
            names = labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
            parts.append(f"Your {names} {'is' if len(ended) == 1 else 'are'} done.")
        if alarms:
            parts.append(f"It's {clock.say_time(clock.local_now(tz, lambda: now))}. This is your alarm.")
        late = [t for t in timers if now - t.ends_at > LATE_S]
        if late:
            first = clock.local_now(tz, lambda: min(t.ends_at for t in late))
            parts.append(f"It went off at {clock.say_time(first)}, while I was off.")
        return " ".join(parts)
