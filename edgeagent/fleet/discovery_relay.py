"""The discovery relay (``edgeagent fleet discovery``): devices' Home Assistant discovery, checked.

A device publishes its discovery document on ``{p}/discovery``, inside its own prefix; the relay,
logged in as an operator, republishes it retained on ``homeassistant/device/<id>/config`` only if
every topic in it is that device's own (``discovery.problems``).  A stolen device login can thus
describe only itself to HA: HA never presses a button that commands another device.  Refused
documents are logged with the reason and counted; what HA had before stays.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from edgeagent.fleet.discovery import problems
from edgeagent.fleet.payload import PayloadError, load_json
from edgeagent.fleet.topics import Topics, device_of

log = logging.getLogger(__name__)

MAX_DOCUMENT = 64 * 1024
MAX_DEPTH = 12


class DiscoveryRelay:
    def __init__(self, client: Any):
        """``client``: a connected OperatorClient."""
        self.client = client
        self.counters = {"relayed": 0, "withdrawn": 0, "refused": 0}

    def run(self, stop: threading.Event) -> None:
        wanted = f"{self.client.root}/+/discovery"
        self.client.subscribe(wanted)
        # a long-running service: subscribe again whenever paho reconnects (a clean session forgets it)
        self.client.client.on_connect = lambda c, _u, _f, reason, _p: None if reason.is_failure else c.subscribe(wanted, 1)
        log.info("discovery relay: relaying %s/+/discovery to homeassistant/device/+/config", self.client.root)
        for msg in self.client.messages_for(None, stop):
            self.handle(msg.topic, msg.payload)
        log.info("discovery relay: stopped (%s)", ", ".join(f"{k} {v}" for k, v in self.counters.items()))

    def handle(self, topic: str, payload: bytes) -> bool:
        """Republish one device's document for HA; False (logged, counted) when it is refused."""
        device = device_of(topic, self.client.root)
        if device is None or topic != Topics(self.client.root, device).discovery:
            return False
        topics = Topics(self.client.root, device)
        if not payload:  # the device withdrew its document: HA forgets it
            self.client.publish(topics.ha_discovery, b"", retain=True)
            self.counters["withdrawn"] += 1
            return True
        try:
            doc = load_json(payload, max_bytes=MAX_DOCUMENT, max_depth=MAX_DEPTH)
            wrong = problems(doc, topics)
        except PayloadError as exc:
            wrong = [str(exc)]
        if wrong:
            self.counters["refused"] += 1
            log.warning("discovery relay: refused %s's document: %s", device, "; ".join(wrong[:5]))
            return False
        self.client.publish(topics.ha_discovery, json.dumps(doc), retain=True)
        self.counters["relayed"] += 1
        log.info("discovery relay: relayed %s's document", device)
        return True
