"""The operator's side of the fleet: a blocking MQTT 5 client for the ``edgeagent fleet`` CLI
(devices, tail, stats, send, config).  Connection settings come from flags, else
``EDGEAGENT_FLEET_*`` environment variables, else the local config's ``[mqtt]`` section."""

from __future__ import annotations

import json
import math
import os
import queue
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeagent.config import MqttConfig
from edgeagent.fleet.link import make_client
from edgeagent.fleet.topics import Topics

ENV = "EDGEAGENT_FLEET_"
# option -> (MqttConfig field, parser); the same names serve flags (--ca-file) and env (..._CA_FILE)
OPTIONS = {"host": str, "port": int, "username": str, "password_file": str, "tls": bool,
           "ca_file": str, "cert_file": str, "key_file": str, "topic_root": str}


class FleetError(RuntimeError):
    """The broker refused us, is unreachable, or a device did not answer."""


def broker_settings(base: MqttConfig, flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> MqttConfig:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for name, kind in OPTIONS.items():
        raw = env.get(ENV + name.upper())
        if raw is not None:
            values[name] = raw.strip().lower() in ("1", "true", "yes", "on") if kind is bool else kind(raw)
        if flags.get(name) not in (None, False):
            values[name] = flags[name]
    settings = replace(base, **values)
    password = env.get(ENV + "PASSWORD")
    if settings.password_file:
        try:
            password = Path(settings.password_file).read_text().strip()
        except OSError as exc:
            raise FleetError(f"cannot read password file {settings.password_file}: {exc.strerror}") from None
    if password is not None:
        settings = replace(settings, password=password)
    return settings


def client_id(settings: MqttConfig, session: str | None) -> str:
    """``<login>:<name>``: operators' client ids are prefixed by their login, so collectors and CLI
    sessions of one login never collide with another's, and never with a device (whose client id is
    its login, which cannot contain ':').  A named session (``--session``) keeps its name."""
    login = settings.username or "operator"
    if session is not None and (not session or len(session) > 64 or not session.isprintable()
                                or any(c in session for c in "+#/")):
        raise FleetError("a session name is 1-64 printable characters without '+', '#' or '/'")
    return f"{login}:{session or 'cli-' + uuid.uuid4().hex[:8]}"


class OperatorClient:
    """Connected on construction (or FleetError); messages for the subscriptions go to a queue."""

    def __init__(self, settings: MqttConfig, timeout: float = 5.0, session: str | None = None):
        self.settings = settings
        self.root = settings.topic_root
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._connack: queue.Queue[Any] = queue.Queue()
        self._subacks: queue.Queue[Any] = queue.Queue()
        self.client = make_client(settings, client_id(settings, session))
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self._connack.put(reason)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: self._subacks.put(codes)
        props = Properties(PacketTypes.CONNECT)
        if session:  # a named session: the broker keeps our subscriptions and queues while we are away
            props.SessionExpiryInterval = 7 * 86400
        try:
            self.client.connect(settings.host, settings.port, keepalive=30, clean_start=not session,
                                properties=props)
        except OSError as exc:
            raise FleetError(f"cannot reach broker {settings.host}:{settings.port}: {exc}") from None
        self.client.loop_start()
        try:
            reason = self._connack.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise FleetError(f"broker {settings.host}:{settings.port} did not answer in {timeout:.0f} s") from None
        if reason.is_failure:
            self.close()
            raise FleetError(f"broker {settings.host}:{settings.port} refused the connection: {reason}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> "OperatorClient":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def topics(self, device: str) -> Topics:
        return Topics(self.root, device)

    def subscribe(self, *filters: str, timeout: float = 5.0) -> None:
        self.client.subscribe([(f, 1) for f in filters])
        try:
            codes = self._subacks.get(timeout=timeout)
        except queue.Empty:
            raise FleetError("broker did not confirm the subscription") from None
        refused = [f for f, code in zip(filters, codes) if code.is_failure]
        if refused:
            raise FleetError(f"broker refused subscription to {', '.join(refused)} (check the ACL for this user)")

    def messages_for(self, seconds: float | None, stop: threading.Event | None = None) -> Iterator[mqtt.MQTTMessage]:
        """Messages as they arrive, for ``seconds`` (None: until ``stop`` or forever)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        while not (stop and stop.is_set()):
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                yield self.messages.get(timeout=left)
            except queue.Empty:
                continue

    def request(self, device: str, command: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a command with an MQTT 5 response topic + correlation data; the device's answer."""
        topics = self.topics(device)
        reply_topic = f"{topics.replies}/{uuid.uuid4().hex[:12]}"
        correlation = uuid.uuid4().bytes
        self.subscribe(reply_topic)
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = reply_topic
        props.CorrelationData = correlation
        self.client.publish(topics.command(command), json.dumps(args), qos=1, properties=props)
        for msg in self.messages_for(timeout):
            if msg.topic == reply_topic and getattr(msg.properties, "CorrelationData", None) == correlation:
                self.client.unsubscribe(reply_topic)
                answer = device_json(msg.payload)
                if not isinstance(answer, dict):
                    raise FleetError(f"{device} answered {command} with something that is not a JSON object")
                return answer
        raise FleetError(f"no answer from {device} to {command} within {timeout:g} s (is it online?)")

    def retained(self, topic: str, wait: float = 1.0) -> bytes | None:
        """The retained payload of one topic (None when there is none)."""
        self.subscribe(topic)
        for msg in self.messages_for(wait):
            if msg.topic == topic:
                self.client.unsubscribe(topic)
                return msg.payload if msg.retain else None
        self.client.unsubscribe(topic)
        return None

    def publish(self, topic: str, payload: str | bytes, retain: bool = False, timeout: float = 5.0) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise FleetError(f"broker did not acknowledge the message to {topic}")


def device_json(payload: bytes) -> object:
    """A device's payload, parsed strictly (no NaN, no infinity); None when it is not such JSON.
    Whatever a device sends, the operator's tools warn and carry on (a device login may be stolen)."""
    def refuse(_name: str) -> object:
        raise ValueError

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError
        return value
    try:
        return json.loads(payload, parse_constant=refuse, parse_float=finite)
    except (ValueError, RecursionError):
        return None


def shown(value: object, limit: int = 80) -> str:
    """Device-supplied text for a terminal: control characters escaped (no escape sequences), cut short."""
    text = value if isinstance(value, str) else str(value)
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
