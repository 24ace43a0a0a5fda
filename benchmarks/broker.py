"""A real mosquitto on a free loopback port, configured from the repo's deploy/mosquitto (ACL,
password file, persistence), and device configs that log in to it.  Shared by the tests and the
fleet benchmarks, so both run against the broker setup the fleet is deployed with."""

from __future__ import annotations

import json
import os
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

    @property
    def device_port(self) -> int:
        """Where devices connect (today the same listener as operators)."""
        return self.port

    def add_device(self, name: str, password: str) -> None:
        """A device login: user name = device id."""
        self.add_user(name, password)

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
