"""RAUC, the updater in the OS image: its command line, which talks to the ``rauc`` service over D-Bus.

RAUC does the parts that must not be home-made: it checks the bundle's signature against the
image's keyring (``/etc/rauc/keyring.pem``) and its ``compatible`` against the system's, writes
the bundle's root file system into the inactive slot, and switches the boot loader (GRUB on
amd64, U-Boot on the Pi) to try that slot next.  Marking a slot good or bad is RAUC's too.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

PROGRESS = re.compile(r"^\s*(\d{1,3})% (.+)$")
SYSTEM_CONF = "/etc/rauc/system.conf"


class RaucError(RuntimeError):
    """RAUC refused or failed; the message is RAUC's own reason."""


@dataclass(frozen=True)
class BundleInfo:
    compatible: str
    version: str


def _reason(output: str) -> str:
    """RAUC's error line: ``LastError: ...`` from an install, else the last line that is not a log message."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("LastError:"):
            return line.split(":", 1)[1].strip()
    plain = [line for line in lines if not line.startswith(("rauc-Message", "(rauc:", "rauc-WARNING"))]
    return (plain or lines or ["no output"])[-1]


class Rauc:
    def __init__(self, command: str = "rauc", conf: str | None = None):
        self.command = [command] + ([f"--conf={conf}"] if conf else [])
        self.conf = Path(conf or SYSTEM_CONF)

    def _run(self, *args: str, timeout: float = 120.0) -> str:
        try:
            done = subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise RaucError(f"{self.command[0]} is not installed (updates need the edgeagent OS image)") from None
        except subprocess.TimeoutExpired:
            raise RaucError(f"rauc {args[0]} did not finish in {timeout:.0f} s") from None
        if done.returncode != 0:
            raise RaucError(_reason(done.stdout + "\n" + done.stderr))
        return done.stdout

    def info(self, bundle: Path) -> BundleInfo:
        """The bundle's manifest, once its signature checked out against the system's keyring."""
        data = json.loads(self._run("info", "--output-format=json", str(bundle), timeout=300))
        return BundleInfo(data.get("compatible") or "", data.get("version") or "")

    def status(self) -> dict:
        return json.loads(self._run("status", "--output-format=json"))

    def compatible(self) -> str:
        """What this system accepts (RAUC's system.conf): a bundle for another one is refused."""
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(self.conf.read_text())
            return parser.get("system", "compatible")
        except (OSError, configparser.Error) as exc:
            raise RaucError(f"cannot read {self.conf}: {exc}") from None

    def booted(self) -> str | None:
        """Boot name (A/B) of the running slot."""
        status = self.status()
        booted = status.get("booted")
        for entry in status.get("slots", []):
            for slot in entry.values():
                if slot.get("state") == "booted" and slot.get("bootname"):
                    return slot["bootname"]
        return booted

    def install(self, bundle: Path, progress: Callable[[int, str], None] = lambda _p, _m: None,
                timeout: float = 3600.0) -> None:
        """Install into the inactive slot (the service checks signature and compatible first);
        ``progress(percent, message)`` for each step RAUC reports."""
        try:
            process = subprocess.Popen([*self.command, "install", str(bundle)], stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
        except FileNotFoundError:
            raise RaucError(f"{self.command[0]} is not installed (updates need the edgeagent OS image)") from None
        lines: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = PROGRESS.match(line)
            if match:
                progress(int(match.group(1)), match.group(2).strip())
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise RaucError(f"rauc install did not finish in {timeout:.0f} s") from None
        if code != 0:
            raise RaucError(_reason("".join(lines)))

    def mark(self, state: str, slot: str = "booted") -> None:
        if state not in ("good", "bad", "active"):
            raise ValueError(state)
        self._run("status", f"mark-{state}", slot)
