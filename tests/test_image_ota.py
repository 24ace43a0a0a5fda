"""Slow: over-the-air updates of the amd64 image in QEMU, end to end, over MQTT (`make test-image`).

Builds v1 (the image), v2 (a bundle) and v3 (a bundle whose daemon cannot start: its config is made
invalid by a drop-in), boots v1 in QEMU (UEFI, GRUB; TCG unless IMAGE_QEMU_ACCEL=kvm) on a user-mode
network that reaches this machine's broker and HTTP server, and then:

1. bad bundles (unsigned, truncated, another key, a wrong sha256) are refused with the reason on
   the state topic, and the device does not reboot;
2. v1 -> v2: the device downloads, verifies and installs into slot B while a turn is in progress (a
   `listen` nobody answers, a no_speech turn of vad.no_speech_timeout_s); the broker is down from then
   on, so that turn's trace is spooled on the data partition; the device reboots once idle, v2 comes
   back with its config and credentials (it connects with them), publishes the spooled trace, is
   marked good and reports `updated to v2` (that the reboot waits for a turn in progress is
   tests/test_ota.py's; under TCG the install outlasts any turn);
3. v2 -> v3 with `edgeagent fleet update --canary 100%`: v3's daemon fails, the trial rolls back to
   v2 by itself, and the CLI and the state topic say `update failed: <reason>`.

Times (download + install, time to come back, rollback) are printed for the notes.  The device runs
espeak and no embedded LLM: under TCG piper's first synthesis alone takes 12 minutes (tests/test_image.py
covers the full set of engines), and this test boots four times.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.fleet_support import Broker, Watcher, operator_cli
from tests.image_support import (DATA, OUT, Vm, add_boot_file, build, copy_sparse, debugfs, fat, mtools,
                                 replay_journals, require_tools, use_kvm)
from tests.ota_support import FileServer, make_bundle, make_keys

pytestmark = [pytest.mark.slow, pytest.mark.timeout(7200)]

DEVICE = "ota-speaker"
HOST = "10.0.2.2"  # QEMU user networking: this machine's loopback, seen from the guest
KVM = use_kvm()
BOOT_S = 600 if KVM else 1800  # boot to READY and on the broker
BROKEN = "[Service]\n# test: v3's daemon cannot start (vad.silence_ms must be 100..5000)\nEnvironment=EDGEAGENT_VAD__SILENCE_MS=1\n"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fleet(broker: Broker, workdir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return operator_cli(broker, workdir)("--timeout", "20", *args, timeout=timeout)


class Inbox:
    """Every message the watcher got, kept: waiting for one state never throws away a trace."""

    def __init__(self, watcher: Watcher):
        self.watcher, self.seen = watcher, []
        self.read = 0  # state waits look only at messages after the last state they returned

    def wait(self, suffix: str, match, timeout: float, start: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        index = self.read if start is None else start
        while True:
            while index < len(self.seen):
                topic, body = self.seen[index]
                index += 1
                if topic == f"edgeagent/{DEVICE}/{suffix}" and match(body):
                    if start is None:
                        self.read = index
                    return body
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {suffix} message matched within {timeout:.0f} s; last: {self.seen[-3:]}")
            try:
                msg = self.watcher.messages.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            try:
                self.seen.append((msg.topic, json.loads(msg.payload)))
            except ValueError:
                self.seen.append((msg.topic, {"raw": msg.payload.decode(errors="replace")}))

    def state(self, match, timeout: float) -> dict:
        return self.wait("state", lambda s: isinstance(s, dict) and match(s), timeout)


def test_amd64_over_the_air_update_and_automatic_rollback(tmp_path):
    require_tools("mmdebstrap", "mcopy", "sfdisk", "debugfs", "qemu-system-x86_64", "rauc", "mksquashfs")
    if not Path("/usr/share/ovmf/OVMF.fd").exists():
        pytest.skip("needs ovmf (make image-deps)")
    www = tmp_path / "www"
    www.mkdir()
    times: dict[str, float] = {}

    # ---- v1 image, v2 bundle, v3 (broken) bundle: three builds from this tree
    image, times["build v1"] = build("amd64", IMAGE_VERSION="test-v1", IMAGE_BUNDLE="0")
    card = copy_sparse(image, tmp_path / "card.img")
    _, times["build v2"] = build("amd64", IMAGE_VERSION="test-v2")
    shutil.copyfile(OUT / "edgeagent-amd64.raucb", www / "v2.raucb")
    overlay = tmp_path / "broken"
    (overlay / "etc/systemd/system/edgeagent.service.d").mkdir(parents=True)
    (overlay / "etc/systemd/system/edgeagent.service.d/90-test-broken.conf").write_text(BROKEN)
    _, times["build v3"] = build("amd64", IMAGE_VERSION="test-v3-broken", IMAGE_OVERLAY=str(overlay))
    shutil.copyfile(OUT / "edgeagent-amd64.raucb", www / "v3.raucb")
    bundle_mib = (www / "v2.raucb").stat().st_size / 2**20
    # bad bundles
    (www / "truncated.raucb").write_bytes((www / "v2.raucb").read_bytes()[: (www / "v2.raucb").stat().st_size // 3])
    other_key, other_cert = make_keys(tmp_path, "other")
    make_bundle(www, "other-key", other_key, other_cert, compatible="edgeagent-amd64")
    make_bundle(www, "unsigned", None, None, compatible="edgeagent-amd64")

    broker = Broker(tmp_path / "broker")
    password = "ota-secret-on-the-data-partition"
    broker.add_device(DEVICE, password)
    broker.start()
    add_boot_file(card, "edgeagent.toml", f"""
[device]
id = "{DEVICE}"
group = "test"
[mqtt]
enabled = true
host = "{HOST}"
port = {broker.device_port}
username = "{DEVICE}"
password = "{password}"
keepalive_s = 10
[vad]
no_speech_timeout_s = 60.0
[tts]
engine = "espeak"
[llm]
local_enabled = false
[update]
confirm_deadline_s = {BOOT_S}
""", tmp_path)

    watcher = Watcher(broker, [f"edgeagent/{DEVICE}/#"], client_id="ota-test-watcher", clean_start=False,
                      session_expiry=3600)
    inbox = Inbox(watcher)
    vm = Vm(card, tmp_path, network=True, kvm=KVM)
    try:
        with FileServer(www) as server:
            url = lambda name: server.url(name, host=HOST)  # noqa: E731
            state = inbox.state(lambda s: (s.get("image") or {}).get("version") == "test-v1"
                           and s.get("state") == "idle", BOOT_S)
            times["v1 boot to idle on the broker"] = vm.elapsed()
            assert state["image"]["slot"] == "A" and state["group"] == "test"
            boots = len(re.findall(r"edgeagent: booting slot", vm.text()))

            # ---- 1. bad bundles: refused, no reboot
            refusals = {"unsigned.raucb": "Signature size is 0", "truncated.raucb": "",
                        "other-key.raucb": "signature verification failed"}
            for name, why in refusals.items():
                sha = _sha256(www / name)
                sent = _fleet(broker, tmp_path, "send", DEVICE, "update", json.dumps({"url": url(name), "sha256": sha}))
                assert sent.returncode == 0, sent.stderr
                update = inbox.state(lambda s: (s.get("update") or {}).get("sha256") == sha
                                and s["update"]["phase"] == "failed", 600)["update"]
                assert update["status"].startswith("update failed: ") and why in update["status"], update
            wrong = _sha256(www / "other-key.raucb")
            _fleet(broker, tmp_path, "send", DEVICE, "update", json.dumps({"url": url("unsigned.raucb"), "sha256": wrong}))
            update = inbox.state(lambda s: (s.get("update") or {}).get("sha256") == wrong
                            and s["update"]["phase"] == "failed", 900)["update"]
            assert "sha256 mismatch" in update["status"]
            assert len(re.findall(r"edgeagent: booting slot", vm.text())) == boots  # no reboot

            # ---- 2. v1 -> v2, with a turn in progress and the broker down across the reboot
            sha2 = _sha256(www / "v2.raucb")
            started = time.monotonic()
            sent = _fleet(broker, tmp_path, "send", DEVICE, "update", json.dumps({"url": url("v2.raucb"), "sha256": sha2}))
            assert sent.returncode == 0 and '"accepted": true' in sent.stdout, sent.stdout + sent.stderr
            progress = []
            while True:
                update = inbox.state(lambda s: (s.get("update") or {}).get("sha256") == sha2, 1200)["update"]
                progress.append(update["status"])
                if update["phase"] == "installing":
                    break
                assert update["phase"] != "failed", update
            times["v2 download"] = time.monotonic() - started
            listen = _fleet(broker, tmp_path, "send", DEVICE, "listen")  # a turn of no_speech_timeout_s, unanswered
            assert listen.returncode == 0, listen.stderr
            inbox.state(lambda s: s.get("state") == "listening", 30)
            mark = len(vm.text())
            broker.stop()
            vm.wait_for(r"edgeagent: rebooting: update to test-v2", 1200, after=mark)
            times["v2 download + install + wait for idle"] = time.monotonic() - started
            reboot_at = time.monotonic()
            vm.wait_for(rf"edgeagent READY device_id={DEVICE}\b", BOOT_S, after=mark)
            times["v2 reboot to READY"] = time.monotonic() - reboot_at
            broker.start()
            updated = inbox.state(lambda s: (s.get("update") or {}).get("sha256") == sha2
                             and s["update"]["phase"] in ("updated", "failed"), BOOT_S)
            times["v2 back on the broker, marked good"] = time.monotonic() - reboot_at
            assert updated["update"]["status"] == "updated to test-v2", updated["update"]
            assert updated["image"] == {"version": "test-v2", "slot": "B"}
            assert any(s.startswith("downloading") for s in progress) and any(s.startswith("installing") for s in progress)
            trace = inbox.wait("telemetry/turn", lambda t: True, 120, start=0)
            assert trace["outcome"] == "no_speech"  # the turn v1 had in progress, spooled across the update

            # ---- 3. v2 -> v3 (its daemon fails): the CLI, a canary, the trial rolls back to v2
            started = time.monotonic()
            rollout = _fleet(broker, tmp_path, "update", "--all", "--canary", "100%", url("v3.raucb"), "--sha256",
                             _sha256(www / "v3.raucb"), "--wait", str(3 * BOOT_S), timeout=4 * BOOT_S)
            times["v3 update until reported failed (incl. rollback)"] = time.monotonic() - started
            out = rollout.stdout
            assert rollout.returncode == 1, out + rollout.stderr
            assert f"{DEVICE}: update failed: slot A: edgeagent.service failed" in out, out
            assert "vad.silence_ms' = 1: must be between 100 and 5000" in out  # the daemon's own words
            state = inbox.state(lambda s: (s.get("update") or {}).get("phase") == "failed", 60)
            assert state["image"] == {"version": "test-v2", "slot": "B"}
            console = vm.text()
            assert "edgeagent-update-trial: rolling back" in console
    finally:
        vm.stop()
        watcher.close()
        broker.stop()
    # ---- after power-off: config and credentials still where provisioning put them, on the data partition
    replay_journals(card)
    config = debugfs(card, "cat /etc/edgeagent/config.toml", DATA)
    assert f'id = "{DEVICE}"' in config and password not in config
    assert debugfs(card, "cat /etc/edgeagent/credentials/mqtt.password", DATA).strip() == password
    assert "edgeagent.toml" not in mtools("mdir", "-b", "-i", fat(card), "::/").replace("edgeagent.toml.example", "")
    print(f"\nbundle {bundle_mib:.0f} MiB; QEMU {'KVM' if KVM else 'TCG'}; times (s): "
          + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
