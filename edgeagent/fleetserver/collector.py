"""``edgeagent fleet collect``: every device's turn traces and status, into the fleet database.

- Telemetry comes through an MQTT 5 shared subscription (``$share/<group>/<root>/+/telemetry/turn``):
  the broker hands each trace to one collector of the group, so collectors on any number of hosts
  split the load.  Status (``<root>/+/status``) is a plain subscription: it is small, retained
  (MQTT 5 sends no retained messages to shared subscriptions) and each collector needs all of it
  for the devices-online gauge.
- A persistent session (clean start off, session expiry): while no collector runs, the broker
  keeps what arrives for the group, and a restarted collector gets its unacknowledged messages
  again.  Use one stable client id per collector process.
- Manual acknowledgement: paho hands messages over unacknowledged; a writer thread commits them
  in batches and only then sends each PUBACK.  A collector killed at any moment loses nothing;
  what it had not acknowledged comes again and is stored once (the turn id is the key).
  MQTT 5 Receive Maximum bounds how many unacknowledged messages the broker lets us hold.
- Malformed payloads are committed to the rejects table with the reason, then acknowledged.
- The database down: the batch stays unacknowledged and is retried with back-off.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgeagent.config import MqttConfig
from edgeagent.fleet import backoff
from edgeagent.fleet.link import make_client
from edgeagent.fleetserver.metrics import Metrics
from edgeagent.fleetserver.settings import CollectorSettings
from edgeagent.fleetserver.store import Store
from edgeagent.fleetserver.traces import Parsed, parse_message

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    msg: Parsed
    mid: int
    qos: int
    generation: int  # the connection it came on: a packet id means nothing on another one
    arrived: float


_STOP = object()
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason code


class Collector:
    """Start with ``start()``; ``stop()`` commits what it holds, acknowledges it and disconnects."""

    def __init__(self, broker: MqttConfig, open_store: Callable[[], Store], settings: CollectorSettings | None = None,
                 metrics: Metrics | None = None):
        self.settings = s = settings or CollectorSettings()
        self.root = broker.topic_root
        self.metrics = metrics or Metrics()
        self._open_store = open_store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._generation = 0
        self._closing = False
        self._stopped = threading.Event()
        self.connected = threading.Event()
        self.counters = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0, "batches": 0, "db_errors": 0}
        self._broker = broker
        self._client = make_client(broker, s.client_id, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._backoff = backoff.attach(self._client)
        self._client.on_connect_fail = self._on_connect_fail
        self._unreachable_logged = False
        self._writer = threading.Thread(target=self._write_loop, name="edgeagent-collector-writer", daemon=True)
        self._writer_store: Store | None = None

    @property
    def subscriptions(self) -> list[str]:
        return [f"$share/{self.settings.group}/{self.root}/+/telemetry/turn", f"{self.root}/+/status"]

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Open the database (migrating it), then connect; raises StoreError if the database is unusable."""
        self._writer_store = self._open_store()
        for device, status in self._writer_store.devices().items():
            self.metrics.status(device, status)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.session_expiry_s
        props.ReceiveMaximum = self.settings.receive_maximum
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=self._broker.keepalive_s,
                                   clean_start=False, properties=props)
        self._client.loop_start()
        self._writer.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking messages, commit and acknowledge those held, disconnect (the session stays)."""
        self._closing = True
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout)
            self._stopped.set()  # a writer still retrying the database gives up: its batch comes again
            self._writer.join(5)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("collector: broker refused the connection: %s", reason)
            return
        self._generation += 1
        self._backoff.reset()
        self._unreachable_logged = False
        client.subscribe([(topic, SubscribeOptions(qos=1)) for topic in self.subscriptions])
        self.connected.set()
        log.info("collector: connected to %s:%s as %s (session %s)", self._broker.host, self._broker.port,
                 self.settings.client_id, "resumed" if flags.session_present else "new")

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        self._backoff.arm(client)
        if not self._unreachable_logged:  # once an outage, not every retry
            self._unreachable_logged = True
            log.warning("collector: cannot reach the broker at %s:%s; retrying with back-off",
                        self._broker.host, self._broker.port)

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._backoff.arm(client)
        if getattr(reason, "value", None) == SESSION_TAKEN_OVER:
            log.error("collector: another client connected with our client id %r and took the session over: "
                      "give every collector its own --client-id", self.settings.client_id)
        elif self.connected.is_set() and not self._closing:
            log.warning("collector: disconnected (%s); reconnecting", reason)
        self.connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self._closing:
            return  # never acknowledged: the broker sends it again
        self.counters["received"] += 1
        self._queue.put(_Pending(parse_message(msg.topic, msg.payload), msg.mid, msg.qos, self._generation,
                                 time.monotonic()))
        self.metrics.pending.inc()

    # ------------------------------------------------------------ the writer thread

    def _next_batch(self) -> list[_Pending] | None:
        """Up to batch_size messages (waiting batch_wait_s for more after the first); None: stop."""
        try:
            first = self._queue.get(timeout=0.5)
        except queue.Empty:
            return []
        if first is _STOP:
            return None
        batch = [first]
        deadline = time.monotonic() + self.settings.batch_wait_s
        while len(batch) < self.settings.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # finish this batch first
                break
            batch.append(item)
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            if batch and not self._commit(batch):
                break
        if self._writer_store is not None:
            self._writer_store.close()
            self._writer_store = None

    def _commit(self, batch: list[_Pending]) -> bool:
        """Write, commit, then acknowledge; retried while the database fails. False: stopping."""
        delay = 0.5
        while True:
            t0 = time.monotonic()
            try:
                if self._writer_store is None:
                    self._writer_store = self._open_store()
                new = self._writer_store.write([p.msg for p in batch])
                break
            except Exception as exc:
                self.counters["db_errors"] += 1
                self.metrics.db_errors.inc()
                log.warning("collector: database write failed (%s); retrying in %.1f s", exc, delay)
                self._close_store()
                if self._stopped.wait(delay):
                    return False
                delay = min(delay * 2, self.settings.retry_max_s)
        done = time.monotonic()
        generation = self._generation
        for p in batch:
            if p.generation == generation:  # else it comes again on the new connection, and is a duplicate
                self._client.ack(p.mid, p.qos)
            self.metrics.store_delay.observe(done - p.arrived)
        self._account(batch, new, done - t0)
        return True

    def _close_store(self) -> None:
        store, self._writer_store = self._writer_store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass

    def _account(self, batch: list[_Pending], new: list, seconds: float) -> None:
        m = self.metrics
        turns = sum(p.msg.turn is not None for p in batch)
        rejects = [p.msg for p in batch if p.msg.reason is not None]
        for p in batch:
            if p.msg.status is not None:
                m.status(p.msg.device_id, p.msg.status)
        if rejects:  # one line a batch, however many: a flood of junk must not flood the journal
            log.warning("collector: %d message(s) rejected (kept in the rejects table), e.g. on %s: %s",
                        len(rejects), rejects[-1].topic, rejects[-1].reason)
        m.stored(new)
        m.messages.labels("turn").inc(turns)
        m.messages.labels("status").inc(len(batch) - turns - len(rejects))
        m.messages.labels("reject").inc(len(rejects))
        m.duplicates.inc(turns - len(new))
        m.commit_seconds.observe(seconds)
        m.pending.dec(len(batch))
        c = self.counters
        c["batches"] += 1
        c["stored"] += len(new)
        c["duplicates"] += turns - len(new)
        c["rejected"] += len(rejects)
