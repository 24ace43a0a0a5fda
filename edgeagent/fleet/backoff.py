"""Reconnect back-off with random jitter for paho MQTT clients.

paho's own back-off (``reconnect_delay_set``) doubles a fixed delay and has no jitter: after a
broker restart every speaker of a fleet would retry in the same second, then again together 2, 4,
8 s later.  paho has no hook for a random delay, so this drives its public knob instead: before
each wait (from ``on_disconnect`` and ``on_connect_fail``) it sets min = max = a fresh random
delay, and paho's network thread sleeps exactly that long.  Attempt n waits uniformly between
``min_s`` and ``min(max_s, min_s * spread * 2**n)``: the first reconnects of a fleet spread over
``spread`` seconds, and retries against a broker that keeps refusing spread wider each time.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt


@dataclass
class JitteredBackoff:
    min_s: float = 1.0
    max_s: float = 60.0
    spread: float = 4.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def next_delay(self) -> float:
        with self._lock:
            ceiling = min(self.max_s, self.min_s * self.spread * 2 ** min(self.failures, 30))
            self.failures += 1
            return self.rng.uniform(self.min_s, ceiling)

    def arm(self, client: mqtt.Client, *_args: Any) -> None:
        """Set the wait before paho's next connection attempt (a callback for disconnects and failures)."""
        delay = self.next_delay()
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]  # paho sleeps on floats too

    def reset(self) -> None:
        """Connected: the next outage starts from the first window again."""
        with self._lock:
            self.failures = 0


def attach(client: mqtt.Client, backoff: JitteredBackoff | None = None) -> JitteredBackoff:
    """Jitter ``client``'s reconnects; its ``on_disconnect`` must call ``arm`` and a successful
    ``on_connect`` ``reset`` (paho has one slot per callback, which the owner keeps)."""
    backoff = backoff or JitteredBackoff()
    client.on_connect_fail = backoff.arm
    return backoff
