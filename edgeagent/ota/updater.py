"""The device's side of an over-the-air update, behind the fleet command ``update {"url", "sha256"}``.

    downloading N % -> verifying -> installing N % -> installed, rebooting when idle -> rebooting
    (reboot into the new slot) -> confirming -> updated to V        or, at any step, failed: REASON

Every step is written to ``<state_dir>/update/update.json`` (the persistent data partition, so the
record survives the reboot and a rollback) and reported on the state topic.  After ``rauc
install`` the daemon writes ``trial`` (the new slot and the deadline) and asks for a reboot only
when the agent is idle (the image's ``edgeagent-reboot.path`` turns the request file into
``systemctl reboot``: the daemon itself has no privilege to reboot).  On the new slot, the
daemon marks it good (``rauc status mark-good``) once it is READY and connected to the broker;
the image's ``edgeagent-update-trial`` (root) marks it bad and reboots into the old slot when that
has not happened within the deadline or the daemon failed, leaving its reason in ``failed``.
The old slot's daemon then reports ``update failed: <reason>`` with the version it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from edgeagent.ota.download import DownloadError, download
from edgeagent.ota.rauc import Rauc, RaucError
from edgeagent.turn.trace import utc_now_iso

log = logging.getLogger("edgeagent.ota")

IMAGE_RELEASE = Path("/etc/edgeagent-image")  # VERSION=..., COMPATIBLE=... written by image/build.sh
ACTIVE = ("downloading", "verifying", "installing", "installed", "rebooting", "confirming")
BUNDLE_NAME = "bundle.raucb"


def image_release(path: Path = IMAGE_RELEASE) -> dict[str, str]:
    """The OS image's version and compatible (empty outside the image)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def booted_slot(cmdline: Path = Path("/proc/cmdline")) -> str | None:
    """``rauc.slot=B`` on the kernel command line (the boot loader sets it) -> ``B``."""
    try:
        words = cmdline.read_text().split()
    except OSError:
        return None
    return next((w.split("=", 1)[1] for w in words if w.startswith("rauc.slot=")), None)


@dataclass
class UpdateRecord:
    phase: str = "idle"  # ACTIVE phases, "updated", "failed"
    status: str = ""  # what the state topic says, e.g. "downloading 40 %", "update failed: ..."
    percent: int | None = None
    url: str = ""
    sha256: str = ""
    from_version: str = ""
    to_version: str = ""
    slot: str = ""  # the slot the update went into
    boot_id: str = ""  # the boot that installed it: the same boot id after a restart means no reboot yet
    reason: str = ""
    started_at: str = ""
    updated_at: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)  # download, install, ...

    def public(self) -> dict[str, Any]:
        fields = {"phase": self.phase, "status": self.status, "percent": self.percent,
                  "from": self.from_version, "to": self.to_version, "slot": self.slot, "sha256": self.sha256,
                  "reason": self.reason or None, "at": self.updated_at, "timings_s": self.timings_s}
        return {k: v for k, v in fields.items() if v not in ("", None, {})}


@dataclass
class UpdateSettings:
    state_dir: Path
    confirm_deadline_s: float = 900.0
    reboot_request: Path = Path("/run/edgeagent/reboot")
    rauc_conf: str = ""
    release_file: Path = IMAGE_RELEASE
    cmdline: Path = Path("/proc/cmdline")
    boot_id_file: Path = Path("/proc/sys/kernel/random/boot_id")

    @property
    def boot_id(self) -> str:
        try:
            return self.boot_id_file.read_text().strip()
        except OSError:
            return ""

    @property
    def dir(self) -> Path:
        return self.state_dir / "update"

    @classmethod
    def from_config(cls, config: Any) -> "UpdateSettings":
        u = config.update
        return cls(config.state_dir, u.confirm_deadline_s, Path(u.reboot_request), u.rauc_conf)


class Updater:
    """One update at a time; ``report`` gets the public record on every change (the state topic)."""

    def __init__(self, settings: UpdateSettings, report: Callable[[dict[str, Any]], None] = lambda _r: None,
                 is_idle: Callable[[], bool] = lambda: True, rauc: Rauc | None = None):
        self.settings = settings
        self.report = report
        self.is_idle = is_idle
        self.rauc = rauc or Rauc(conf=settings.rauc_conf or None)
        self.record = self._load()
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------ what runs here

    @property
    def release(self) -> dict[str, str]:
        return image_release(self.settings.release_file)

    @property
    def version(self) -> str:
        return self.release.get("VERSION", "")

    def image(self) -> dict[str, Any]:
        """The state topic's ``image`` field: the OS image version and the slot it booted from."""
        return {k: v for k, v in {"version": self.version, "slot": booted_slot(self.settings.cmdline)}.items() if v}

    # ------------------------------------------------------------ the record on the data partition

    @property
    def path(self) -> Path:
        return self.settings.dir / "update.json"

    def _load(self) -> UpdateRecord:
        try:
            data = json.loads(self.path.read_text())
            return UpdateRecord(**{k: v for k, v in data.items() if k in UpdateRecord.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return UpdateRecord()

    def _set(self, phase: str, status: str, **fields: Any) -> None:
        record = self.record
        record.phase, record.status = phase, status
        for key, value in fields.items():
            setattr(record, key, value)
        record.updated_at = utc_now_iso()
        self.settings.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1))
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())  # the reboot comes right after some of these
        os.replace(tmp, self.path)
        if phase != "downloading" or fields.get("percent") is None or fields["percent"] % 10 == 0:
            log.info("update: %s", status)
        self.report(record.public())

    def _fail(self, reason: str) -> None:
        self._set("failed", f"update failed: {reason}", reason=reason, percent=None)
        for leftover in self.settings.dir.glob(BUNDLE_NAME + "*"):  # the bundle, a partial download, its stamp
            leftover.unlink(missing_ok=True)

    # ------------------------------------------------------------ the fleet command

    def start(self, url: str, sha256: str) -> dict[str, Any]:
        """Begin an update in the background (call on the event loop); the command's answer."""
        if self.record.phase in ACTIVE and self._task is not None and not self._task.done():
            raise UpdateBusy(f"an update is already in progress ({self.record.status})")
        if self.record.phase in ("installed", "rebooting", "confirming"):
            raise UpdateBusy(f"an update is waiting for its reboot or confirmation ({self.record.status})")
        self.record = UpdateRecord(url=url, sha256=sha256.lower(), from_version=self.version,
                                   started_at=utc_now_iso())
        self._task = asyncio.get_running_loop().create_task(self._run(url, sha256.lower()))
        return {"accepted": True, "from": self.version}

    async def _run(self, url: str, sha256: str) -> None:
        bundle = self.settings.dir / BUNDLE_NAME
        try:
            started = time.monotonic()
            self._set("downloading", "downloading 0 %", percent=0)
            loop = asyncio.get_running_loop()
            last = [-1]

            def progress(got: int, total: int | None) -> None:
                percent = int(got * 100 / total) if total else None
                if percent is not None and percent != last[0]:
                    last[0] = percent
                    loop.call_soon_threadsafe(lambda: self._set("downloading", f"downloading {percent} %", percent=percent))

            await asyncio.to_thread(download, url, bundle, sha256, progress)
            downloaded = time.monotonic()
            self._set("verifying", "verifying the bundle's signature", percent=None,
                      timings_s={"download": round(downloaded - started, 1)})
            info = await asyncio.to_thread(self.rauc.info, bundle)
            compatible = await asyncio.to_thread(self.rauc.compatible)
            if info.compatible != compatible:
                raise RaucError(f"bundle is for '{info.compatible}', this device is '{compatible}'")
            self.record.to_version = info.version
            self._set("installing", f"installing {info.version}", percent=0)

            def install_progress(percent: int, message: str) -> None:
                loop.call_soon_threadsafe(lambda: self._set("installing", f"installing {info.version}: {percent} % {message}",
                                                            percent=percent))

            await asyncio.to_thread(self.rauc.install, bundle, install_progress)
            slot = await asyncio.to_thread(self._inactive_after_install)
            installed = time.monotonic()
            bundle.unlink(missing_ok=True)
            (self.settings.dir / "failed").unlink(missing_ok=True)
            (self.settings.dir / "trial").write_text(f"{slot} {int(self.settings.confirm_deadline_s)}\n")
            self._set("installed", f"installed {info.version} into slot {slot}; rebooting when idle", slot=slot,
                      percent=None, boot_id=self.settings.boot_id,
                      timings_s={**self.record.timings_s, "install": round(installed - downloaded, 1)})
            await self._reboot_when_idle()
        except (DownloadError, RaucError) as exc:
            self._fail(str(exc))
        except Exception as exc:  # never leave the record claiming an update is under way
            log.exception("update failed")
            self._fail(f"{type(exc).__name__}: {exc}")

    def _inactive_after_install(self) -> str:
        """The slot RAUC wrote: the boot loader's primary now (the one that is not booted)."""
        status = self.rauc.status()
        primary = status.get("boot_primary")
        for entry in status.get("slots", []):
            for name, slot in entry.items():
                if name == primary and slot.get("bootname"):
                    return slot["bootname"]
        booted = booted_slot(self.settings.cmdline)
        return {"A": "B", "B": "A"}.get(booted or "", "?")

    async def _reboot_when_idle(self) -> None:
        while not self.is_idle():
            await asyncio.sleep(1.0)
        self._set("rebooting", f"rebooting into {self.record.to_version}")
        request = self.settings.reboot_request
        request.parent.mkdir(parents=True, exist_ok=True)
        request.write_text(f"update to {self.record.to_version}\n")

    # ------------------------------------------------------------ after the reboot

    def resume(self) -> None:
        """At start: what became of an update that rebooted (call once, before the link connects)."""
        record = self.record
        if record.phase not in ("installed", "rebooting", "confirming"):
            if record.phase in ACTIVE:  # the daemon stopped mid-download or mid-install: nothing was switched
                self._fail(f"interrupted while {record.phase} (the daemon restarted)")
            elif record.phase != "idle":
                self.report(record.public())  # the last outcome stays on the state topic
            return
        if record.phase in ("installed", "rebooting") and record.boot_id and record.boot_id == self.settings.boot_id:
            # the daemon restarted before the reboot it asked for: still waiting for an idle moment to reboot
            self._set("installed", f"installed {record.to_version} into slot {record.slot}; rebooting when idle")
            try:
                self._task = asyncio.get_running_loop().create_task(self._reboot_when_idle())
            except RuntimeError:
                pass  # no event loop (tests): nothing to schedule
            return
        booted = booted_slot(self.settings.cmdline)
        failed = self.settings.dir / "failed"
        if booted == record.slot and self.version == record.to_version:
            self._set("confirming", f"confirming {record.to_version}: waiting for READY and the broker")
            return
        if failed.exists():
            reason = failed.read_text().strip()
        elif booted == record.slot:
            reason = f"slot {booted} runs {self.version or 'an unknown version'}, not {record.to_version}"
        else:
            reason = f"slot {record.slot} did not come up; the boot loader returned to slot {booted}"
        (self.settings.dir / "trial").unlink(missing_ok=True)
        self._fail(f"{reason} (running {self.version or 'the old version'})")

    async def confirm(self, connected: Callable[[], Awaitable[bool]]) -> None:
        """On the new slot, once READY: mark it good when ``connected()`` says the broker is reached."""
        if self.record.phase != "confirming":
            return
        if not await connected():
            return  # the trial's deadline rolls back
        try:
            await asyncio.to_thread(self.rauc.mark, "good", "booted")
        except RaucError as exc:
            self._fail(f"could not mark slot {self.record.slot} good: {exc}")
            return
        (self.settings.dir / "trial").unlink(missing_ok=True)
        self._set("updated", f"updated to {self.record.to_version}")


class UpdateBusy(RuntimeError):
    """An update is already under way."""
