"""Real mosquitto (configured from deploy/mosquitto) and MQTT helpers for the fleet tests."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Iterator

import paho.mqtt.client as mqtt
from benchmarks.broker import OPERATOR, REPO, Broker, device_config, next_message

__all__ = ["Broker", "device_config", "OPERATOR"]



class Watcher:
    """An MQTT client (operator by default) that queues every message it receives."""

    def __init__(self, broker: Broker, subscriptions: list[str], user: tuple[str, str] = OPERATOR,
                 client_id: str | None = None, clean_start: bool = True, session_expiry: int = 0,
                 port: int | None = None):
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or uuid.uuid4().hex,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(*user)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self.subscribed.put(codes)
        self._subs = subscriptions
        self.client.on_connect = lambda c, *_a: c.subscribe([(s, 1) for s in self._subs]) if self._subs else None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        props = Properties(PacketTypes.CONNECT)
        if session_expiry:
            props.SessionExpiryInterval = session_expiry
        self.client.connect("127.0.0.1", port or broker.port, keepalive=5, clean_start=clean_start, properties=props)
        self.client.loop_start()
        if self._subs:
            self.subscribed.get(timeout=5)

    def get(self, match: Callable[[mqtt.MQTTMessage], bool] = lambda m: True, timeout: float = 10) -> mqtt.MQTTMessage:
        msg = next_message(self.messages, match, timeout)
        if msg is None:
            raise AssertionError("no matching MQTT message in time")
        return msg

    def get_json(self, topic: str, match: Callable[[dict], bool] = lambda d: True, timeout: float = 10) -> dict:
        def ok(msg: mqtt.MQTTMessage) -> bool:
            if msg.topic != topic:
                return False
            try:
                return match(json.loads(msg.payload))
            except ValueError:
                return False
        return json.loads(self.get(ok, timeout).payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_device(config_path: Path) -> subprocess.Popen:
    """The device process; its log goes to a file (a pipe nobody drains would block it)."""
    log = open(config_path.with_suffix(".log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent.fleet.device", "--config", str(config_path)],
                            cwd=REPO, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    log.close()
    return proc


def stop_process(proc: subprocess.Popen) -> str:
    """Stop it (SIGTERM, then SIGKILL) and return its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.log_path.read_text(errors="replace")  # type: ignore[attr-defined]


def connect(port: int, user: tuple[str, str], client_id: str, clean_start: bool = True,
            session_expiry: int = 0, timeout: float = 5.0) -> tuple[mqtt.Client, object, bool]:
    """One MQTT 5 connection attempt: (client, CONNACK reason, session_present).  The client keeps
    running (paho reconnects it) until the caller closes it with ``close_client``."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    answers: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(*user)
    client.on_connect = lambda _c, _u, flags, reason, _p: answers.put((reason, flags.session_present))
    props = Properties(PacketTypes.CONNECT)
    if session_expiry:
        props.SessionExpiryInterval = session_expiry
    client.connect("127.0.0.1", port, keepalive=5, clean_start=clean_start, properties=props)
    client.loop_start()
    reason, present = answers.get(timeout=timeout)
    return client, reason, present


def close_client(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def assert_no_message(watcher: Watcher, match: Callable[[mqtt.MQTTMessage], bool], seconds: float) -> None:
    """Nothing matching arrives within ``seconds``."""
    try:
        msg = watcher.get(match, timeout=seconds)
    except AssertionError:
        return
    raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload[:300]!r}")


def operator_cli(broker: Broker, workdir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``edgeagent fleet ...`` as the operator against ``broker`` (a real CLI process)."""
    password = workdir / "operator.password"
    password.write_text(OPERATOR[1])

    def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(operator_command(broker, password, *args), cwd=REPO, capture_output=True, text=True,
                              timeout=timeout, input=stdin, env=_clean_env())
    return cli


def operator_command(broker: Broker, password_file: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1", "--port", str(broker.port),
            "--username", OPERATOR[0], "--password-file", str(password_file), *args]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}


@contextlib.contextmanager
def discovery_relay(broker: Broker, workdir: Path) -> Iterator[Path]:
    """``edgeagent fleet discovery`` running as the operator; yields the path of its log."""
    operator_cli(broker, workdir)  # writes the password file
    log = workdir / "discovery-relay.log"
    proc = subprocess.Popen(operator_command(broker, workdir / "operator.password", "discovery"), cwd=REPO,
                            env=_clean_env(), stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        yield log
    finally:
        proc.terminate()
        proc.wait(10)
