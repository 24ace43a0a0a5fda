"""The fleet command ``update`` and ``edgeagent fleet update`` with real devices (the fleet device process
and its MQTT link), a real broker, a real HTTP server and real RAUC bundle checks.

What CI can run: bad bundles (unsigned, truncated, another architecture, a wrong sha256) are refused
with the reason on the state topic and no reboot is asked for; a canary that fails stops the rollout
before the other devices are asked; ``--group`` picks devices by their configured group.  A bundle
that installs, the reboot and the rollback run for real in the image test (tests/test_image.py).
"""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest

from tests.fleet_support import Watcher, device_config, operator_cli, start_device, stop_process
from tests.ota_support import FileServer, make_bundle, make_keys, needs_rauc, system_conf

pytestmark = needs_rauc


def _update_settings(tmp_path, device: str) -> dict:
    return {"reboot_request": str(tmp_path / f"{device}.reboot"), "rauc_conf": str(tmp_path / "system.conf")}


def _fleet(broker, tmp_path, *args, timeout=120) -> subprocess.CompletedProcess:
    return operator_cli(broker, tmp_path)("--timeout", "10", *args, timeout=timeout)


def _update_state(watcher: Watcher, device: str, sha256: str, timeout: float = 60) -> dict:
    return watcher.get_json(f"edgeagent/{device}/state",
                            lambda s: (s.get("update") or {}).get("sha256") == sha256
                            and s["update"]["phase"] in ("failed", "updated"), timeout=timeout)["update"]


def test_bad_bundles_are_refused_with_a_reason_and_no_reboot(tmp_path, broker):
    key, cert = make_keys(tmp_path, "dev")
    other_key, other_cert = make_keys(tmp_path, "other")
    system_conf(tmp_path, cert, compatible="edgeagent-amd64")
    www = tmp_path / "www"
    www.mkdir()
    good = make_bundle(www, "good", key, cert, compatible="edgeagent-amd64")
    (www / "truncated.raucb").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    make_bundle(www, "unsigned", None, None, compatible="edgeagent-amd64")
    make_bundle(www, "other-key", other_key, other_cert, compatible="edgeagent-amd64")
    make_bundle(www, "arm64", key, cert, compatible="edgeagent-arm64")
    config = device_config(tmp_path, broker, "spk-1", update=_update_settings(tmp_path, "spk-1"))
    watcher = Watcher(broker, ["edgeagent/spk-1/state", "edgeagent/spk-1/status"])
    device = start_device(config)
    try:
        watcher.get(lambda m: m.topic == "edgeagent/spk-1/status" and m.payload == b"online", timeout=30)
        expected = {
            "unsigned.raucb": "Signature size is 0",
            "truncated.raucb": "Invalid bundle format",
            "other-key.raucb": "signature verification failed",
            "arm64.raucb": "bundle is for 'edgeagent-arm64', this device is 'edgeagent-amd64'",
        }
        with FileServer(www) as server:
            for name, why in expected.items():
                sha = hashlib.sha256((www / name).read_bytes()).hexdigest()
                sent = _fleet(broker, tmp_path, "send", "spk-1", "update", json.dumps({"url": server.url(name), "sha256": sha}))
                assert sent.returncode == 0 and '"accepted": true' in sent.stdout, sent.stderr
                update = _update_state(watcher, "spk-1", sha)
                assert update["phase"] == "failed" and why in update["status"], (name, update)
                assert update["status"].startswith("update failed: ")
            wrong = "0" * 64
            _fleet(broker, tmp_path, "send", "spk-1", "update", json.dumps({"url": server.url("good.raucb"), "sha256": wrong}))
            update = _update_state(watcher, "spk-1", wrong)
            assert update["status"].startswith(f"update failed: sha256 mismatch: expected {wrong}, got "
                                               f"{hashlib.sha256(good.read_bytes()).hexdigest()}")
        refused = _fleet(broker, tmp_path, "send", "spk-1", "update", json.dumps({"url": "file:///etc/passwd", "sha256": wrong}))
        assert refused.returncode == 1 and "must be an http:// or https:// URL" in refused.stderr
        assert not (tmp_path / "spk-1.reboot").exists()  # nothing was installed, so no reboot was asked for
        assert device.poll() is None
        assert not list((tmp_path / "state-spk-1" / "update").glob("*.raucb*"))  # no bundle left behind
    finally:
        watcher.close()
        stop_process(device)


def test_a_failed_canary_stops_the_rollout_before_the_other_devices(tmp_path, broker):
    key, cert = make_keys(tmp_path, "dev")
    system_conf(tmp_path, cert, compatible="edgeagent-amd64")
    www = tmp_path / "www"
    www.mkdir()
    make_bundle(www, "arm64", key, cert, compatible="edgeagent-arm64")  # every canary refuses it
    names = ["kitchen-1", "kitchen-2", "kitchen-3", "hall-1"]
    devices = []
    for name in names:
        group = "kitchen" if name.startswith("kitchen") else "hall"
        devices.append(start_device(device_config(tmp_path, broker, name, device={"group": group},
                                                  update=_update_settings(tmp_path, name))))
    watcher = Watcher(broker, ["edgeagent/+/status", "edgeagent/+/state"])
    try:
        online: set[str] = set()
        while online != set(names):
            msg = watcher.get(lambda m: m.topic.endswith("/status") and m.payload == b"online", timeout=30)
            online.add(msg.topic.split("/")[1])
        with FileServer(www) as server:
            run = _fleet(broker, tmp_path, "update", "--group", "kitchen", "--canary", "30%", server.url("arm64.raucb"),
                         "--wait", "60")
        assert run.returncode == 1, run.stdout + run.stderr
        assert "canary: kitchen-1 (1 of 3)" in run.stdout
        assert "kitchen-1: update failed: bundle is for 'edgeagent-arm64'" in run.stdout
        assert "rollout stopped, 2 device(s) not updated" in run.stdout
        rows = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()
                if line.split() and line.split()[0] in names}
        assert rows == {"kitchen-1": "failed", "kitchen-2": "skipped", "kitchen-3": "skipped"}  # hall-1: not in the group
        # the devices after the canary were never asked: their state has no update at all
        states = {}
        while not watcher.messages.empty():
            msg = watcher.messages.get_nowait()
            if msg.topic.endswith("/state"):
                states[msg.topic.split("/")[1]] = json.loads(msg.payload)
        for name in ("kitchen-2", "kitchen-3", "hall-1"):
            assert "update" not in states.get(name, {}), states.get(name)
    finally:
        watcher.close()
        for proc in devices:
            stop_process(proc)


def test_the_cli_names_devices_or_a_group_not_both(tmp_path, broker):
    run = _fleet(broker, tmp_path, "update", "--all", "spk-1", "http://127.0.0.1:1/b.raucb", "--sha256", "0" * 64)
    assert run.returncode == 2 and "name devices, or use --all or --group" in run.stderr
    bad = _fleet(broker, tmp_path, "update", "--all", "--canary", "150%", "http://127.0.0.1:1/b.raucb", "--sha256", "0" * 64)
    assert bad.returncode == 2 and "--canary '150%'" in bad.stderr


@pytest.mark.parametrize("text, count", [("10%", 1), ("50", 2), ("100%", 4)])
def test_canary_share(text, count):
    from edgeagent.fleet.rollout import canary_split, parse_canary

    first, rest = canary_split(["a", "b", "c", "d"], parse_canary(text))
    assert len(first) == count and first + rest == ["a", "b", "c", "d"]


def test_a_device_login_that_answers_garbage_cannot_crash_the_rollout(tmp_path, broker):
    """A stolen device login may answer the update command and publish its state as it likes: the
    operator's CLI reports it as a failure, escaped, and carries on (the security issue's rule)."""
    import paho.mqtt.client as mqtt

    from tests.fleet_support import close_client, connect

    sha = "ab" * 32
    broker.add_device("rogue", "pw-rogue")
    rogue, reason, _ = connect(broker.device_port, ("rogue", "pw-rogue"), "edgeagent-rogue")
    assert not reason.is_failure

    def answer(client: mqtt.Client, _userdata, msg: mqtt.MQTTMessage) -> None:
        for state in (b"[]", b"not json", json.dumps({"update": "\x1b[2J"}).encode(),
                      json.dumps({"update": {"sha256": sha, "phase": "failed", "status": "\x1b[31mred",
                                             "reason": [1]}, "image": [2]}).encode()):
            client.publish("edgeagent/rogue/state", state, qos=1)
        client.publish(msg.properties.ResponseTopic, b'{"ok": true, "from": {"x": "\\u001b[0m"}}', qos=1)

    rogue.on_message = answer
    rogue.subscribe("edgeagent/rogue/cmd/update", qos=1)
    try:
        run = _fleet(broker, tmp_path, "update", "rogue", "http://127.0.0.1:1/b.raucb", "--sha256", sha, "--wait", "20")
    finally:
        close_client(rogue)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    assert "\x1b" not in run.stdout
    assert "rogue: \\x1b[31mred" in run.stdout  # its words, escaped
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith("rogue ")]
    assert rows and rows[-1][1] == "failed", run.stdout
