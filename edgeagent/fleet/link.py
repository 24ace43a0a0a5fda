"""The device's MQTT link: one paho client on its own network thread beside the asyncio daemon.

Nothing here blocks the event loop: paho connects, reconnects (back-off with random jitter,
fleet/backoff.py) and reads on its thread; telemetry goes through the disk outbox thread;
commands and config changes are handed to the loop with ``run_coroutine_threadsafe``; results
are published from whichever thread finishes (paho's publish is thread-safe).  On every
(re)connect the link subscribes again, says ``online`` (the last will says ``offline``), and
re-publishes state, reported config and Home Assistant discovery, all retained.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import ssl
import threading
import time
from typing import Any, Awaitable, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from edgeagent import __version__
from edgeagent.config import Config, MqttConfig, TelemetryConfig
from edgeagent.fleet import backoff, commands
from edgeagent.fleet.control import CommandFailed, DeviceControl
from edgeagent.fleet.discovery import discovery_payload
from edgeagent.fleet.intents import IntentRequests
from edgeagent.fleet.remote_config import ConfigChange, RemoteConfig
from edgeagent.fleet.spool import Spool, TelemetryOutbox
from edgeagent.fleet.topics import HA_STATUS, Topics
from edgeagent.intents.templates import home_intent_names
from edgeagent.turn.trace import TurnTrace, utc_now_iso

log = logging.getLogger(__name__)

ConfigCallback = Callable[[ConfigChange], "Awaitable[None] | None"]
COMMAND_TIMEOUT_S = 60.0


def make_client(m: MqttConfig, client_id: str, will_topic: str | None = None, manual_ack: bool = False) -> mqtt.Client:
    """A paho MQTT 5 client with the TLS and credentials of ``m`` (the device, the fleet CLI and the
    collector, which acknowledges messages itself once they are stored)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if m.username:
        client.username_pw_set(m.username, m.password or None)
    if m.tls:
        client.tls_set(ca_certs=m.ca_file or None, certfile=m.cert_file or None, keyfile=m.key_file or None,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if will_topic:
        client.will_set(will_topic, "offline", qos=1, retain=True)
    client.reconnect_delay_set(min_delay=1, max_delay=60)
    return client


class _RateLimited:
    """Runs ``fn`` on its own thread at most once per ``interval`` seconds after calls, always
    ending with the latest call; a call itself only sets a flag (no thread start, no I/O)."""

    def __init__(self, fn: Callable[[], None], interval: float):
        self._fn, self._interval = fn, interval
        self._dirty = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeagent-fleet-state", daemon=True)
        self._thread.start()

    def __call__(self) -> None:
        self._dirty.set()

    def _run(self) -> None:
        while True:
            self._dirty.wait()
            if self._closed.is_set():
                return
            self._dirty.clear()
            try:
                self._fn()
            except Exception:
                log.exception("fleet: state publish failed")
            if self._closed.wait(self._interval):
                return

    def cancel(self) -> None:
        self._closed.set()
        self._dirty.set()


class FleetLink:
    """Status, state, telemetry, remote config, commands and discovery for one device.

    ``config`` is the local base config; ``link.config`` is the one in force (base plus the
    persisted remote desired config), which the daemon should build its pipeline from.
    """

    def __init__(self, config: Config, control: DeviceControl, on_config: ConfigCallback | None = None,
                 *, state_interval_s: float = 0.5):
        self.remote = RemoteConfig(config, config.state_dir, starting=True)
        config = self.remote.current  # base + persisted desired (identity and paths stay local)
        self.topics = Topics(config.mqtt.topic_root, config.device.id)
        self._control = control
        self._on_config = on_config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = threading.Event()
        self._started_at = time.monotonic()
        self._state: dict[str, Any] = {"state": "idle"}
        self._state_lock = threading.Lock()
        # while offline, nothing is queued: on_connect publishes the latest state anyway
        self._publish_state_limited = _RateLimited(
            lambda: self._publish_state() if self._connected.is_set() else None, state_interval_s)
        # every message is answered (a command's result, a config report) or counted here and logged
        self.counters = {"connects": 0, "messages": 0, "rejected": 0, "ignored": 0}
        self._rollback_timer: threading.Timer | None = None
        self.intent_requests = IntentRequests()
        if config.mqtt.username and config.mqtt.username != config.device.id:
            log.warning("fleet: mqtt.username %r is not the device id %r: the broker binds both the client id and "
                        "the topics to the user name", config.mqtt.username, config.device.id)
        # the client id is the device id, which the broker's device listener enforces (its user name)
        self._client = make_client(config.mqtt, config.device.id, self.topics.status)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = lambda *_a: self.outbox.notify()
        self._backoff = backoff.attach(self._client)  # reconnects of a fleet spread out, not in lockstep
        spool = Spool(config.state_dir / "fleet" / "telemetry-spool", config.telemetry.spool_max)
        self.outbox = TelemetryOutbox(spool, self._publish_telemetry, self._connected.is_set)

    @property
    def config(self) -> Config:
        return self.remote.current

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Begin connecting (returns at once; call from the event loop that runs the control)."""
        self._loop = asyncio.get_running_loop()
        self.outbox.start()
        m = self.config.mqtt
        if self.remote.unconfirmed:  # started with a remote config that has not reached the broker yet
            self._rollback_timer = threading.Timer(m.rollback_after_s, self._roll_back_if_unreachable)
            self._rollback_timer.daemon = True
            self._rollback_timer.start()
        self._client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    async def stop(self, timeout: float = 5.0) -> None:
        """Clean shutdown: spool what is pending, say ``offline``, disconnect."""
        self._publish_state_limited.cancel()
        if self._rollback_timer is not None:
            self._rollback_timer.cancel()
        await asyncio.to_thread(self.outbox.stop, timeout)
        if self._connected.is_set():
            info = self._client.publish(self.topics.status, "offline", qos=1, retain=True)
            await asyncio.to_thread(_wait_published, info, timeout)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)

    # ------------------------------------------------------------ the two seams the agent calls

    def publish_trace(self, trace: TurnTrace) -> None:
        """Hand a finished turn's trace over; never blocks (serialise + enqueue, ~tens of µs)."""
        data = trace.to_dict(include_text=self.config.telemetry.include_text)
        self.update_state(last_turn_ms=trace.ttfa_ms, backend=trace.llm_backend, last_turn_at=trace.started_at)
        self.outbox.submit(json.dumps(data, separators=(",", ":")).encode())

    def configure(self, telemetry: TelemetryConfig) -> None:
        """A trace sink's live config: nothing to do, ``include_text`` is read from the config in force."""

    def close(self) -> None:
        """A trace sink's close: the link outlives the voice loop and is stopped by its owner (``stop``)."""

    def update_state(self, **fields: Any) -> None:
        """Merge fields (state=, mute=, volume=, backend=, ...) into retained ``{p}/state``;
        published at most every ``state_interval_s``, the latest value always goes out."""
        with self._state_lock:
            self._state.update(fields)
        self._publish_state_limited()

    def publish_intent(self, body: dict[str, Any]) -> bool:
        """A recognised home intent on ``{p}/intent`` (QoS 1, not retained), asking for a response
        correlated by ``body["id"]``; False when the broker is not connected (nothing is queued:
        a command must not fire minutes later)."""
        if not self._connected.is_set():
            return False
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = self.topics.intent_response
        props.CorrelationData = body["id"].encode()
        info = self._client.publish(self.topics.intent, json.dumps(body, default=str), qos=1, properties=props)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "uptime_s": round(time.monotonic() - self._started_at, 1),
                **self.counters, "telemetry": self.outbox.stats()}

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("fleet: broker %s:%s refused the connection: %s",
                        self.config.mqtt.host, self.config.mqtt.port, reason)
            return
        self.counters["connects"] += 1
        self._backoff.reset()
        t = self.topics
        # commands keep their retain flag (retain-as-published), so a retained one is recognised and refused
        client.subscribe([(t.config_desired, SubscribeOptions(qos=1)),
                          (t.commands, SubscribeOptions(qos=1, retainAsPublished=True)),
                          (HA_STATUS, SubscribeOptions(qos=1)), (t.intent_response, SubscribeOptions(qos=1))])
        client.publish(t.status, "online", qos=1, retain=True)
        self._publish_state()
        self._publish_reported()
        self._publish_discovery()
        self._connected.set()
        self.remote.reached_broker()
        self.outbox.notify()
        log.info("fleet: connected to %s:%s as %s", self.config.mqtt.host, self.config.mqtt.port, t.device_id)

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._backoff.arm(client)
        if self._connected.is_set():
            log.warning("fleet: disconnected (%s); telemetry is spooled until the broker is back", reason)
        self._connected.clear()

    def _on_message(self, _client: Any, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.counters["messages"] += 1
        try:
            if msg.topic == self.topics.config_desired:
                self._handle_desired(msg.payload)
            elif msg.topic == self.topics.intent_response:
                props = getattr(msg, "properties", None)
                self.intent_requests.handle(msg.payload, getattr(props, "CorrelationData", None))
            elif msg.topic == HA_STATUS:
                if msg.payload.strip() == b"online":
                    self._publish_discovery()
            elif msg.topic.startswith(self.topics.prefix + "/cmd/"):
                self._handle_command(msg)
            else:
                self.counters["ignored"] += 1
        except Exception:  # a message must never take the link down
            self.counters["rejected"] += 1
            log.exception("fleet: failed to handle a message on %s", msg.topic)

    # ------------------------------------------------------------ handlers

    def _handle_desired(self, payload: bytes) -> None:
        change = self.remote.handle(payload)
        if change is None:
            self.counters["rejected"] += 1
        elif self.connected:
            self.remote.reached_broker()
        self._publish_reported()
        if change is not None and any(key.startswith("intents.sentences") for key in change.changed):
            self._publish_discovery()  # the intent event entity lists the operator's intents
        if change is not None and change.changed and self._on_config is not None:
            self._run_on_loop(self._deliver_config(change))

    def _roll_back_if_unreachable(self) -> None:
        """Timer: the remote config this process started with has not reached the broker in
        ``mqtt.rollback_after_s``: back to the last good one, by a restart."""
        if self.connected or not self.remote.unconfirmed:
            return
        self.remote.roll_back(f"not connected to the broker within {self.config.mqtt.rollback_after_s} s")
        self._run_on_loop(self._control.restart())

    async def _deliver_config(self, change: ConfigChange) -> None:
        try:
            outcome = self._on_config(change)  # type: ignore[misc]
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            log.exception("fleet: the config callback failed")

    def _handle_command(self, msg: mqtt.MQTTMessage) -> None:
        name = msg.topic.rsplit("/", 1)[-1]
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        bad_reply_topic = response_topic is not None and self.topics.reply_problem(response_topic)
        reply = lambda body: self._reply(name, None if bad_reply_topic else response_topic, correlation, body)  # noqa: E731
        if msg.retain:  # never a command: a retained restart would restart the device on every connect
            self.counters["ignored"] += 1
            if msg.payload:  # (the empty one is our own clearing it)
                log.warning("fleet: ignored and cleared a retained command on %s", msg.topic)
                self._client.publish(msg.topic, b"", qos=1, retain=True)
                reply(commands.result(name, None, error="retained command ignored: send commands with retain=false"))
            return
        try:
            if bad_reply_topic:
                raise commands.BadCommand(bad_reply_topic)
            args = commands.parse(name, msg.payload)
        except commands.BadCommand as exc:
            self.counters["rejected"] += 1
            reply(commands.result(name, None, error=str(exc)))
            return
        self._run_on_loop(self._run_command(name, args, reply))

    async def _run_command(self, name: str, args: dict[str, Any], reply: Callable[[bytes], None]) -> None:
        try:
            fields = await asyncio.wait_for(commands.execute(name, args, self._control, self._link_command),
                                            COMMAND_TIMEOUT_S)
            reply(commands.result(name, args, fields=fields))
        except CommandFailed as exc:
            reply(commands.result(name, args, error=str(exc)))
        except asyncio.TimeoutError:
            reply(commands.result(name, args, error=f"timed out after {COMMAND_TIMEOUT_S:.0f} s"))
        except Exception as exc:
            log.exception("fleet: command %s failed", name)
            reply(commands.result(name, args, error=f"internal error: {type(exc).__name__}"))

    async def _link_command(self, name: str) -> dict[str, Any]:
        if name == "ping":
            return {"pong": True, "device_id": self.topics.device_id, "version": __version__,
                    "uptime_s": round(time.monotonic() - self._started_at, 1)}
        return {"device": await self._control.stats(), "state": await self._control.state(), "link": self.stats()}

    def _reply(self, name: str, response_topic: str | None, correlation: bytes | None, body: bytes) -> None:
        props = None
        if response_topic:  # checked by reply_problem: under {p}/reply/
            topic = response_topic
            if correlation is not None:
                props = Properties(PacketTypes.PUBLISH)
                props.CorrelationData = correlation
        else:  # no MQTT 5 response topic, or one we must not answer on
            topic = self.topics.command_result(name if name.isprintable() and len(name) <= 64 else "invalid")
        self._client.publish(topic, body, qos=1, properties=props)

    def _run_on_loop(self, coro: Awaitable[None]) -> None:
        if self._loop is None or self._loop.is_closed():
            coro.close()  # type: ignore[attr-defined]
            return
        asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    # ------------------------------------------------------------ publishing

    def _publish_telemetry(self, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self._client.publish(self.topics.telemetry, payload, qos=1)

    def _publish_state(self) -> None:
        with self._state_lock:
            body = dict(self._state)
        body.update(version=__version__, uptime_s=round(time.monotonic() - self._started_at, 1),
                    updated_at=utc_now_iso())
        self._client.publish(self.topics.state, json.dumps(body, default=str), qos=1, retain=True)

    def _publish_reported(self) -> None:
        self._client.publish(self.topics.config_reported, json.dumps(self.remote.report(), default=str, allow_nan=False),
                             qos=1, retain=True)

    def _publish_discovery(self) -> None:
        body = discovery_payload(self.topics, self.config.device.name, __version__,
                                 intent_names=home_intent_names(self.config.intents))
        self._client.publish(self.topics.discovery, json.dumps(body), qos=1, retain=True)


def _wait_published(info: mqtt.MQTTMessageInfo, timeout: float) -> None:
    try:
        info.wait_for_publish(timeout)
    except (RuntimeError, ValueError):
        pass  # not connected any more: the last will covers us
