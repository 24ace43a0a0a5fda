"""FleetLink behaviour across reconnects, state rate limiting and TLS with client certificates."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest

from edgeagent.config import load_config
from edgeagent.fleet.device import StandaloneDevice
from edgeagent.fleet.link import FleetLink
from tests.fleet_support import Broker, Watcher, device_config, start_device, stop_process
from tests.test_fleet_device import request


def test_reconnects_and_resubscribes_after_broker_restart(tmp_path, broker):
    proc = start_device(device_config(tmp_path, broker, "garage"))
    watcher = Watcher(broker, ["edgeagent/garage/status"])
    try:
        watcher.get(lambda m: m.payload == b"online", timeout=15)
        watcher.close()
        broker.stop()
        time.sleep(0.5)
        broker.start()
        watcher = Watcher(broker, ["edgeagent/garage/#"])
        # a fresh (not retained) "online": the device reconnected by itself with back-off
        watcher.get(lambda m: m.topic == "edgeagent/garage/status" and m.payload == b"online" and not m.retain,
                    timeout=30)
        # its command subscription came back with it
        assert request(watcher, "garage", "ping", "{}")["pong"] is True
    finally:
        watcher.close()
        stop_process(proc)


def test_state_is_retained_and_rate_limited_latest_value_wins(tmp_path, broker):
    config = load_config(device_config(tmp_path, broker, "den"))
    watcher = Watcher(broker, ["edgeagent/den/state"])

    async def scenario() -> None:
        link = FleetLink(config, StandaloneDevice(config), state_interval_s=0.5)
        link.start()
        while not link.connected:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.6)
        for n in range(200):  # a burst of state changes within ~0.2 s
            link.update_state(state="listening" if n % 2 else "thinking", turn=n)
            await asyncio.sleep(0.001)
        await asyncio.sleep(1.5)
        await link.stop()

    asyncio.run(scenario())
    states = []
    while not watcher.messages.empty():
        states.append(json.loads(watcher.messages.get_nowait().payload))
    watcher.close()
    bursts = [s for s in states if "turn" in s]
    assert 1 <= len(bursts) <= 3, f"{len(bursts)} state messages for 200 changes"
    assert bursts[-1]["turn"] == 199 and bursts[-1]["state"] == "listening"
    late = Watcher(broker, ["edgeagent/den/state"])  # retained: a newcomer sees the latest
    try:
        assert json.loads(late.get(lambda m: m.retain).payload)["turn"] == 199
    finally:
        late.close()


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    """The same broker config plus a devices' TLS listener that takes the client certificate's CN as
    user name (and so as client id), under the devices' ACL."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=edgeagent test CA", cwd=pki)
    for name, cn in (("server", "127.0.0.1"), ("study", "study")):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                 f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=pki)
        ext = pki / f"{name}.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name, cwd=pki)
    b = Broker(tmp_path / "broker")
    from tests.conftest import free_port
    b.tls_port = free_port()
    b.conf.write_text(b.conf.read_text() + f"""
listener {b.tls_port} 127.0.0.1
cafile {pki}/ca.crt
certfile {pki}/server.crt
keyfile {pki}/server.key
require_certificate true
use_identity_as_username true
use_username_as_clientid true
allow_anonymous false
acl_file {Broker.DEVICE_ACL}
""")
    b.start()
    yield b, pki
    b.stop()


def test_tls_with_client_certificate_and_acl(tmp_path, tls_broker):
    b, pki = tls_broker
    config_path = device_config(tmp_path, b, "study", mqtt={
        "port": b.tls_port, "tls": True, "ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "study.crt"),
        "key_file": str(pki / "study.key"), "username": "", "password_file": ""})
    watcher = Watcher(b, ["edgeagent/study/#"])
    proc = start_device(config_path)
    try:
        watcher.get(lambda m: m.topic == "edgeagent/study/status" and m.payload == b"online", timeout=15)
        assert request(watcher, "study", "ping", "{}")["pong"] is True
    finally:
        out = stop_process(proc)
        watcher.close()
    assert "connected to 127.0.0.1" in out


def test_remote_config_persists_and_boots_into_it_without_a_broker(tmp_path):
    from edgeagent.config import build_config, resolve_runtime
    from edgeagent.fleet.remote_config import RemoteConfig

    base = resolve_runtime(build_config({"paths": {"state_dir": str(tmp_path)}, "device": {"id": "box"}}))
    remote = RemoteConfig(base, base.state_dir)
    change = remote.handle(b'{"wake": {"threshold": 0.7}, "stt": {"engine": "pocketsphinx"}}')
    assert change is not None and change.changed == ("stt.engine", "wake.threshold")
    assert change.restart_required == ("stt.engine",)
    assert (tmp_path / "fleet" / "desired.json").stat().st_mode & 0o077 == 0
    assert remote.handle(b'{"mqtt": {"password": "s3cret"}}') is None  # secrets are local-only
    assert "s3cret" not in json.dumps(remote.report())
    rebooted = RemoteConfig(base, base.state_dir)
    assert rebooted.current.wake.threshold == 0.7 and rebooted.current.stt.engine == "pocketsphinx"
    assert remote.handle(b'{"wake": {"threshold": 2}}') is None  # rejected: the persisted one stays
    assert RemoteConfig(base, base.state_dir).current.wake.threshold == 0.7
    assert remote.handle(b"{}").changed == ("stt.engine", "wake.threshold")  # empty desired: back to base
    assert RemoteConfig(base, base.state_dir).current.wake.threshold == base.wake.threshold


def test_a_document_the_device_keeps_failing_to_start_with_is_rolled_back(tmp_path):
    """Shadow-style last good: three starts in a row that never reach the broker with a new document
    (a crash before the link connects), and the fourth starts with the last good one, refuses that
    document from then on, and says so in its report."""
    from edgeagent.config import build_config, resolve_runtime
    from edgeagent.fleet.remote_config import RemoteConfig

    base = resolve_runtime(build_config({"paths": {"state_dir": str(tmp_path)}, "device": {"id": "box"}}))
    good, bad = b'{"vad": {"silence_ms": 700}}', b'{"vad": {"silence_ms": 700}, "stt": {"engine": "pocketsphinx"}}'
    first = RemoteConfig(base, base.state_dir, starting=True)
    first.reached_broker()
    assert first.handle(good) is not None
    first.reached_broker()  # live and connected: the last good document now
    assert first.handle(bad).restart_required == ("stt.engine",)
    first.reached_broker()  # not in force before a restart: the last good one stays
    for _start in range(3):
        crashing = RemoteConfig(base, base.state_dir, starting=True)  # and never reaches the broker
        assert crashing.current.stt.engine == "pocketsphinx" and crashing.unconfirmed
    back = RemoteConfig(base, base.state_dir, starting=True)
    assert back.current.stt.engine == base.stt.engine and back.current.vad.silence_ms == 700
    assert not back.unconfirmed
    report = back.report()
    assert report["rollback"]["keys"] == ["stt.engine"] and "3 starts" in report["rollback"]["reason"]
    assert back.handle(bad) is None and "rolled back" in back.last_error["reason"]  # still retained on the broker
    assert back.handle(bad.replace(b"700", b"710")) is not None  # a changed document is tried again
