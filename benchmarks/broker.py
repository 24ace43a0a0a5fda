"""A real mosquitto on a free loopback port, configured from the repo's deploy/mosquitto (ACL,
password file, persistence), and device configs that log in to it.  Shared by the tests and the
fleet benchmarks, so both run against the broker setup the fleet is deployed with."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEPLOY = REPO / "deploy" / "mosquitto"
OPERATOR = ("operator", "operator-secret")


class Broker:
    """mosquitto with the repo's config: the devices' listener on ``device_port`` (client id = login),
    the operators' on ``port``, each with its own password file and ACL, and persistence."""

    DEVICE_ACL = DEPLOY / "edgeagent-devices.acl"
    OPERATOR_ACL = DEPLOY / "edgeagent-operators.acl"

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.device_port = free_port(), free_port()
        self.passwd = self.dir / "operators.passwd"
        self.device_passwd = self.dir / "devices.passwd"
        self.device_passwd.touch(mode=0o600)
        self.proc: subprocess.Popen | None = None
        self.add_user(*OPERATOR)
        conf = (DEPLOY / "edgeagent.conf").read_text()
        for deployed, here in (("/etc/mosquitto/edgeagent-devices.passwd", self.device_passwd),
                               ("/etc/mosquitto/edgeagent-operators.passwd", self.passwd),
                               ("/etc/mosquitto/edgeagent-devices.acl", self.DEVICE_ACL),
                               ("/etc/mosquitto/edgeagent-operators.acl", self.OPERATOR_ACL)):
            conf = conf.replace(f" {deployed}\n", f" {here}\n")
        conf = re.sub(r"^persistence_location .*$", f"persistence_location {self.dir}/", conf, flags=re.M)
        conf = re.sub(r"^listener 1883 127.0.0.1$", f"listener {self.device_port} 127.0.0.1", conf, flags=re.M)
        conf = re.sub(r"^listener 1884 127.0.0.1$", f"listener {self.port} 127.0.0.1", conf, flags=re.M)
        self.conf = self.dir / "mosquitto.conf"
        # as root mosquitto would drop to user "mosquitto", which cannot read pytest's tmp dirs
        run_as = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(conf + f"\nlog_dest file {self.dir}/mosquitto.log\n{run_as}")

    def add_user(self, name: str, password: str) -> None:
        """An operator's login (the fleet CLI, a collector, Home Assistant): the operators' listener."""
        self._add(self.passwd, name, password)

    def add_device(self, name: str, password: str) -> None:
        """A device's login, user name = device id: the devices' listener."""
        self._add(self.device_passwd, name, password)

    def _add(self, passwd: Path, name: str, password: str) -> None:
        flags = ["-b"] if passwd.exists() and passwd.stat().st_size else ["-c", "-b"]
        subprocess.run(["mosquitto_passwd", *flags, str(passwd), name, password], check=True,
                       capture_output=True)
        if self.proc is not None:
            self.proc.send_signal(signal.SIGHUP)  # reload the password files
    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        waiting = [self.device_port, self.port]
        while waiting and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.05)
        if waiting:
            raise RuntimeError(f"mosquitto did not start: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.proc.wait(10)
        self.proc = None

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text()[-3000:] if path.exists() else ""


def next_message(messages: "queue.Queue", match: Any, timeout: float) -> Any:
    """The first queued MQTT message ``match(msg)`` accepts within ``timeout`` (the others are
    dropped), or None."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = messages.get(timeout=left)
        except queue.Empty:
            return None
        if match(msg):
            return msg
    return None


def device_config(tmp_path: Path, broker: Broker, device_id: str, **sections: dict[str, Any]) -> Path:
    """A device TOML (user = device id, password from a file) with its own state dir."""
    password = f"pw-{device_id}-{uuid.uuid4().hex[:6]}"
    broker.add_device(device_id, password)
    pw_file = tmp_path / f"{device_id}.password"
    pw_file.write_text(password)
    data: dict[str, dict[str, Any]] = {
        "device": {"id": device_id},
        "paths": {"state_dir": str(tmp_path / f"state-{device_id}")},
        "mqtt": {"enabled": True, "host": "127.0.0.1", "port": broker.device_port, "username": device_id,
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
