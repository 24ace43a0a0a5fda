"""OS updates on the device side, with the real pieces that run outside the image: HTTP downloads
(resumed after a broken transfer, refused on a wrong sha256), RAUC's own bundle checks (signature,
truncation, architecture), and what a device that rebooted into a failed update reports.  The
install itself, the reboot and the rollback run for real in the image test (tests/test_image.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from edgeagent.ota.download import DownloadError, download
from edgeagent.ota.rauc import Rauc, RaucError
from edgeagent.ota.updater import Updater, UpdateSettings
from tests.ota_support import FileServer, make_bundle, make_keys, needs_rauc, system_conf


def test_a_broken_transfer_resumes_where_it_stopped(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    data = bytes(range(256)) * 4096  # 1 MiB
    (served / "b.raucb").write_bytes(data)
    seen = []
    with FileServer(served) as server:
        server.cut_after["/b.raucb"] = 300_000
        path = download(server.url("b.raucb"), tmp_path / "dl" / "bundle.raucb", hashlib.sha256(data).hexdigest(),
                        lambda got, total: seen.append((got, total)), backoff_s=0.01)
    assert path.read_bytes() == data
    (first, no_range), (second, ranged) = server.requests
    assert first == second == "/b.raucb" and no_range is None
    resumed_at = int(ranged.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 300_000  # the second transfer asked only for what the first did not bring
    assert (resumed_at, len(data)) in seen  # ... from exactly the bytes already on disk
    assert seen[-1] == (len(data), len(data)) and not (tmp_path / "dl" / "bundle.raucb.part").exists()


def test_a_wrong_sha256_is_refused_and_nothing_is_kept(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    (served / "b.raucb").write_bytes(b"x" * 100_000)
    dest = tmp_path / "dl" / "bundle.raucb"
    with FileServer(served) as server, pytest.raises(DownloadError, match="sha256 mismatch: expected 0{64}"):
        download(server.url("b.raucb"), dest, "0" * 64, backoff_s=0.01)
    assert not dest.exists() and not dest.with_name("bundle.raucb.part").exists()
    with FileServer(served) as server, pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url("missing.raucb"), dest, "0" * 64, backoff_s=0.01)


@needs_rauc
def test_rauc_accepts_only_bundles_signed_with_the_image_key(tmp_path):
    key, cert = make_keys(tmp_path, "dev")
    other_key, other_cert = make_keys(tmp_path, "other")
    rauc = Rauc(conf=str(system_conf(tmp_path, cert)))
    good = make_bundle(tmp_path, "good", key, cert, version="2.0")
    assert (rauc.info(good).compatible, rauc.info(good).version) == ("edgeagent-test", "2.0")
    assert rauc.compatible() == "edgeagent-test"
    truncated = tmp_path / "truncated.raucb"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    refusals = {
        "unsigned": (make_bundle(tmp_path, "unsigned", None, None), "Signature size is 0"),
        "other key": (make_bundle(tmp_path, "other", other_key, other_cert), "signature verification failed"),
        "truncated": (truncated, "Invalid bundle format"),
    }
    for name, (bundle, why) in refusals.items():
        with pytest.raises(RaucError, match=why):
            rauc.info(bundle)


def _settings(tmp_path, slot: str, version: str) -> UpdateSettings:
    (tmp_path / "cmdline").write_text(f"console=ttyS0 root=PARTUUID=x rauc.slot={slot} quiet\n")
    (tmp_path / "release").write_text(f"VERSION={version}\nCOMPATIBLE=edgeagent-amd64\n")
    (tmp_path / "boot_id").write_text("boot-after-the-reboot\n")
    return UpdateSettings(tmp_path / "state", reboot_request=tmp_path / "reboot", release_file=tmp_path / "release",
                          cmdline=tmp_path / "cmdline", boot_id_file=tmp_path / "boot_id")


def _rebooted_record(settings: UpdateSettings) -> None:
    settings.dir.mkdir(parents=True)
    (settings.dir / "update.json").write_text(json.dumps(
        {"phase": "rebooting", "status": "rebooting into v3", "from_version": "v2", "to_version": "v3", "slot": "B",
         "sha256": "ab" * 32, "boot_id": "boot-that-installed"}))
    (settings.dir / "trial").write_text("B 600\n")


def test_after_a_rollback_the_old_slot_reports_why_the_update_failed(tmp_path):
    settings = _settings(tmp_path, slot="A", version="v2")  # booted the old slot again
    _rebooted_record(settings)
    (settings.dir / "failed").write_text("slot B: edgeagent.service failed (exit-code): config error\n")
    reports = []
    updater = Updater(settings, report=reports.append)
    updater.resume()
    assert reports[-1]["phase"] == "failed"
    assert reports[-1]["status"] == "update failed: slot B: edgeagent.service failed (exit-code): config error (running v2)"
    assert updater.image() == {"version": "v2", "slot": "A"}
    assert not (settings.dir / "trial").exists()  # decided: the next boot is an ordinary one
    assert json.loads((settings.dir / "update.json").read_text())["phase"] == "failed"  # survives a restart


def test_a_slot_that_never_came_up_is_reported_too(tmp_path):
    settings = _settings(tmp_path, slot="A", version="v2")
    _rebooted_record(settings)  # no 'failed' note: the new kernel never reached the trial script
    reports = []
    Updater(settings, report=reports.append).resume()
    assert reports[-1]["reason"] == "slot B did not come up; the boot loader returned to slot A (running v2)"


def test_the_new_slot_waits_for_the_broker_before_it_is_marked_good(tmp_path):
    settings = _settings(tmp_path, slot="B", version="v3")
    _rebooted_record(settings)
    reports = []
    updater = Updater(settings, report=reports.append)
    updater.resume()
    assert reports[-1]["phase"] == "confirming"

    async def never() -> bool:
        return False

    asyncio.run(updater.confirm(never))  # no broker: not marked good; the trial's deadline rolls back
    assert updater.record.phase == "confirming" and (settings.dir / "trial").exists()


def test_a_daemon_restart_before_the_reboot_still_reboots_when_idle(tmp_path):
    settings = _settings(tmp_path, slot="A", version="v2")
    _rebooted_record(settings)
    settings.boot_id_file.write_text("boot-that-installed\n")  # same boot: the daemon restarted, no reboot yet
    idle = [False]
    reports = []

    async def scenario() -> None:
        updater = Updater(settings, report=reports.append, is_idle=lambda: idle[0])
        updater.resume()
        await asyncio.sleep(1.5)
        assert not settings.reboot_request.exists()  # a turn is in progress: no reboot
        idle[0] = True
        await asyncio.wait_for(updater._task, 5)

    asyncio.run(scenario())
    assert settings.reboot_request.read_text() == "update to v3\n"
    assert [r["phase"] for r in reports] == ["installed", "rebooting"]
