"""The remote config's files: the desired document in force, the last one known good, and why a
rollback happened (AWS-shadow style: desired, reported, last good).

A document is *known good* once the device started with it and reached its broker.  A device that
starts with an unconfirmed document and crashes before reaching the broker, ``MAX_UNCONFIRMED_STARTS``
times, or runs without reaching it for ``mqtt.rollback_after_s``, goes back to the last good one,
and refuses that same document afterwards (the broker keeps it retained; applying it again would
only lose the broker again).  Everything is written with fsync + rename, owner-only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_UNCONFIRMED_STARTS = 3
EMPTY = b"{}"


@dataclass(frozen=True)
class Rollback:
    at: str
    reason: str
    keys: list[str]  # what was undone
    document: str  # sha256 of the refused document


def fingerprint(payload: bytes) -> str:
    """Same document, same fingerprint, whatever its spacing or key order (a JSON object is assumed)."""
    try:
        canonical = json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = payload
    return hashlib.sha256(canonical).hexdigest()


class Shadow:
    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.desired_path = self.dir / "desired.json"
        self.good_path = self.dir / "last-good.json"
        self.state_path = self.dir / "shadow.json"
        self._state: dict[str, Any] = self._read_state()

    # ------------------------------------------------------------ reading

    def desired(self) -> bytes | None:
        return _read(self.desired_path)

    def good(self) -> bytes:
        return _read(self.good_path) or EMPTY

    def confirmed(self) -> bool:
        desired = self.desired()
        return desired is None or fingerprint(desired) == fingerprint(self.good())

    @property
    def rollback(self) -> Rollback | None:
        data = self._state.get("rollback")
        return Rollback(**data) if isinstance(data, dict) else None

    def refuses(self, payload: bytes) -> bool:
        rollback = self.rollback
        return rollback is not None and fingerprint(payload) == rollback.document

    # ------------------------------------------------------------ writing

    def save_desired(self, payload: bytes) -> None:
        _write(self.desired_path, payload)

    def count_start(self) -> int:
        """One more start with an unconfirmed document; how many so far."""
        starts = int(self._state.get("unconfirmed_starts", 0)) + 1
        self._state["unconfirmed_starts"] = starts
        self._save_state()
        return starts

    def confirm(self, payload: bytes) -> None:
        """``payload`` reached the broker: it is the last good document now."""
        if fingerprint(payload) != fingerprint(self.good()):
            _write(self.good_path, payload)
        if self._state.get("unconfirmed_starts"):
            self._state["unconfirmed_starts"] = 0
            self._save_state()

    def roll_back(self, rollback: Rollback) -> bytes:
        """Back to the last good document; returns it."""
        good = self.good()
        _write(self.desired_path, good)
        self._state = {"unconfirmed_starts": 0, "rollback": asdict(rollback)}
        self._save_state()
        return good

    def _read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(_read(self.state_path) or b"{}")
        except ValueError:
            log.warning("remote config: %s is damaged, starting it afresh", self.state_path)
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self) -> None:
        _write(self.state_path, json.dumps(self._state).encode())


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _write(path: Path, payload: bytes) -> None:
    """Write + fsync + rename, owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
