"""Real mosquitto (configured from deploy/mosquitto) and MQTT helpers for the fleet tests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import paho.mqtt.client as mqtt
from benchmarks.broker import OPERATOR, REPO, Broker, device_config

__all__ = ["Broker", "device_config", "OPERATOR"]



class Watcher:
    """An MQTT client (operator by default) that queues every message it receives."""

    def __init__(self, broker: Broker, subscriptions: list[str], user: tuple[str, str] = OPERATOR,
                 client_id: str | None = None, clean_start: bool = True, session_expiry: int = 0):
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
        self.client.connect("127.0.0.1", broker.port, keepalive=5, clean_start=clean_start, properties=props)
        self.client.loop_start()
        if self._subs:
            self.subscribed.get(timeout=5)

    def get(self, match: Callable[[mqtt.MQTTMessage], bool] = lambda m: True, timeout: float = 10) -> mqtt.MQTTMessage:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching MQTT message in time")
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if match(msg):
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
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    log = open(config_path.with_suffix(".log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "edgeagent.fleet.device", "--config", str(config_path)],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
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
