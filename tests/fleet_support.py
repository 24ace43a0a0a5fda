"""Real mosquitto (configured from deploy/mosquitto) and MQTT helpers for the fleet tests."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import REPO, free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEPLOY = REPO / "deploy" / "mosquitto"
OPERATOR = ("operator", "operator-secret")


class Broker:
    """mosquitto on a free loopback port with the repo's ACL, a password file and persistence."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.passwd = self.dir / "passwd"
        self.proc: subprocess.Popen | None = None
        self.add_user(*OPERATOR)
        conf = (DEPLOY / "edgeagent.conf").read_text()
        for key, value in (("password_file", self.passwd), ("acl_file", DEPLOY / "edgeagent.acl"),
                           ("persistence_location", str(self.dir) + "/")):
            conf = re.sub(rf"^{key} .*$", f"{key} {value}", conf, flags=re.M)
        conf = re.sub(r"^listener 1883 127.0.0.1$", f"listener {self.port} 127.0.0.1", conf, flags=re.M)
        self.conf = self.dir / "mosquitto.conf"
        # as root mosquitto would drop to user "mosquitto", which cannot read pytest's tmp dirs
        run_as = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(conf + f"\nlog_dest file {self.dir}/mosquitto.log\n{run_as}")

    def add_user(self, name: str, password: str) -> None:
        flags = ["-b"] if self.passwd.exists() else ["-c", "-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(self.passwd), name, password], check=True,
                       capture_output=True)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)  # reload the password file

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text()[-3000:] if path.exists() else ""


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def device_config(tmp_path: Path, broker: Broker, device_id: str, **sections: dict[str, Any]) -> Path:
    """A device TOML (user = device id, password from a file) with its own state dir."""
    password = f"pw-{device_id}-{uuid.uuid4().hex[:6]}"
    broker.add_user(device_id, password)
    pw_file = tmp_path / f"{device_id}.password"
    pw_file.write_text(password)
    data: dict[str, dict[str, Any]] = {
        "device": {"id": device_id},
        "paths": {"state_dir": str(tmp_path / f"state-{device_id}")},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.port, "username": device_id,
                 "password_file": str(pw_file), "keepalive_s": 5},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp_path / f"{device_id}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


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
