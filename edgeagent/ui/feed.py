"""What the kiosk's page is sent: the daemon's own typed events, numbered and kept for a reconnect.

Each event becomes one JSON message: its class name as ``type`` and its fields as they are (the
same vocabulary as ``edgeagent.events``, no second one), plus ``seq`` (this process's running
number), ``turn`` (the id of the turn it belongs to), ``at`` (the wall clock of the event's own
``t``) and ``sent`` (when it reached the feed), so the page can tell how late it shows it and where
the time went.  The device's state document (the one the fleet
reads on ``{p}/state``: mute, volume, whether the voice loop runs) travels as ``DeviceState``.

A page that reconnects names the last message it saw and gets exactly what it missed; one that
missed more than is kept (or that saw another process) gets a snapshot instead: the latest state,
microphone, timers and device document, and the events of the last few turns.  Viewers off the
device get every ``text`` field blanked unless transcripts may leave it (``telemetry.include_text``).
Loop-only: every method is called on the daemon's event loop.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from edgeagent.events import Event, MicrophoneStatus, StateChanged, TimersChanged

DEVICE_STATE = "DeviceState"
STICKY = (StateChanged.__name__, MicrophoneStatus.__name__, TimersChanged.__name__, DEVICE_STATE)
SUPERSEDED = ("TranscriptPartial", "Spoken")  # only the latest of these per turn matters to a page catching up


@dataclass(frozen=True)
class Message:
    seq: int
    type: str
    turn: str
    full: str  # the JSON as the device's own screen sees it
    redacted: str  # without transcripts and replies


@dataclass(eq=False)
class Subscription:
    """One page's stream: messages to send, in order; ``None`` ends it."""

    text: bool  # may this viewer see transcripts and replies
    queue: asyncio.Queue[Message | None] = field(default_factory=asyncio.Queue)
    ended: bool = False


class Feed:
    def __init__(self, keep: int = 2000, keep_turns: int = 3, backlog: int = 1000):
        self.epoch = secrets.token_hex(4)  # a new process numbers from 1 again: ids name the process too
        self.seq = 0
        self.backlog = backlog  # a page this far behind is dropped; it reconnects and catches up
        self._recent: collections.deque[Message] = collections.deque(maxlen=keep)
        self._sticky: dict[str, Message] = {}
        self._turns: collections.deque[str] = collections.deque(maxlen=keep_turns)
        self._subscriptions: set[Subscription] = set()

    # ------------------------------------------------------------ in

    def publish(self, event: Event, turn: str = "") -> None:
        """One event of the voice loop (``turn``: the id of the turn it belongs to, if any)."""
        fields = dataclasses.asdict(event)
        fields["at"] = time.time() - (time.monotonic() - event.t)
        self._add(type(event).__name__, turn, fields)

    def publish_device(self, fields: dict[str, Any]) -> None:
        """The device's state document changed (mute, volume, voice loop up)."""
        self._add(DEVICE_STATE, "", {**fields, "at": time.time()})

    def _add(self, kind: str, turn: str, fields: dict[str, Any]) -> None:
        self.seq += 1
        body = {"seq": self.seq, "type": kind, "turn": turn, **fields, "sent": time.time()}
        redacted = {key: (None if key == "text" else value) for key, value in body.items()}
        message = Message(self.seq, kind, turn, json.dumps(body), json.dumps(redacted))
        self._recent.append(message)
        if kind in STICKY:
            self._sticky[kind] = message
        if turn and turn not in self._turns:
            self._turns.append(turn)
        for subscription in list(self._subscriptions):
            self._deliver(subscription, message)

    def _deliver(self, subscription: Subscription, message: Message | None) -> None:
        if subscription.ended:
            return
        if message is not None and subscription.queue.qsize() >= self.backlog:
            message = None  # too slow: end it rather than hold the daemon's memory
        subscription.queue.put_nowait(message)
        subscription.ended = message is None

    # ------------------------------------------------------------ out

    def message_id(self, message: Message) -> str:
        return f"{self.epoch}-{message.seq}"

    def subscribe(self, last_id: str | None, text: bool) -> tuple[Subscription, list[Message], bool]:
        """A new stream: (subscription, what to send first, whether that resumes ``last_id``)."""
        subscription = Subscription(text)
        missed = self._since(last_id)
        self._subscriptions.add(subscription)
        if missed is not None:
            return subscription, missed, True
        return subscription, self.snapshot(), False

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        for subscription in list(self._subscriptions):
            self._deliver(subscription, None)
        self._subscriptions.clear()

    def _since(self, last_id: str | None) -> list[Message] | None:
        """Messages after ``last_id``, or None when they are not all kept (or the id is another process's)."""
        epoch, _, seq = (last_id or "").partition("-")
        if epoch != self.epoch or not seq.isdigit() or int(seq) > self.seq:
            return None
        last = int(seq)
        oldest = self._recent[0].seq if self._recent else self.seq + 1
        if last + 1 < oldest:
            return None
        return [m for m in self._recent if m.seq > last]

    def snapshot(self) -> list[Message]:
        """Enough to draw the page from nothing: the sticky messages and the last turns' events,
        without partials and captions that later ones replace, in the order they happened."""
        turns = set(self._turns)
        latest: dict[tuple[str, str], int] = {}
        for message in self._recent:
            if message.type in SUPERSEDED:
                latest[(message.turn, message.type)] = message.seq
            if message.type == "TranscriptFinal":
                latest[(message.turn, "TranscriptPartial")] = message.seq
        chosen = {m.seq: m for m in self._sticky.values()}
        for message in self._recent:
            if message.turn not in turns or message.type in STICKY:
                continue
            if message.type in SUPERSEDED and latest[(message.turn, message.type)] != message.seq:
                continue
            chosen[message.seq] = message
        return [chosen[seq] for seq in sorted(chosen)]
