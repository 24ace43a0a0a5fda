"""systemd integration: the unit, sd_notify + watchdog on a real socket, journald fields, install layout."""

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeagent.logsetup import make_handler
from tests.conftest import REPO

UNIT = REPO / "systemd" / "edgeagent.service"
needs_systemd = pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")


@needs_systemd
@pytest.mark.parametrize("name, max_exposure", [("edgeagent.service", 3.9), ("edgeagent-collector.service", 2.0),
                                                      ("edgeagent-discovery.service", 2.0)])
def test_unit_verifies_and_scores_ok(tmp_path, name, max_exposure):
    # verify needs ExecStart to exist: point it at this checkout's own edgeagent console script
    edgeagent = Path(sys.executable).with_name("edgeagent")
    assert edgeagent.exists(), "install the package (make install) first"
    unit = tmp_path / name
    unit.write_text((REPO / "systemd" / name).read_text().replace("/opt/edgeagent/.venv/bin/edgeagent", str(edgeagent)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    problems = [l for l in verify.stderr.splitlines() if name in l]
    assert verify.returncode == 0 and not problems, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True)
    score = re.search(rf"Overall exposure level for {re.escape(name)}: ([\d.]+) (\w+)", security.stdout)
    assert score, security.stdout[-500:]
    assert float(score.group(1)) <= max_exposure and score.group(2) in ("OK", "SAFE"), score.group(0)


NOTIFY_SCRIPT = textwrap.dedent("""
    import asyncio, time
    from edgeagent.runtime.service import notify, watchdog_loop

    async def main():
        dog = asyncio.create_task(watchdog_loop())
        notify("READY=1")
        await asyncio.sleep(0.6)
        notify("STATUS=blocking the loop")
        time.sleep(1.0)            # a stalled event loop: no pings may go out now
        await asyncio.sleep(0.35)
        notify("STOPPING=1")
        dog.cancel()

    asyncio.run(main())
""")


def test_notify_ready_and_watchdog_pings_from_the_event_loop(tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
    proc = subprocess.Popen([sys.executable, "-c", NOTIFY_SCRIPT], cwd=REPO, env=env)
    received = []
    while not received or received[-1][1] != "STOPPING=1":
        received.append((time.monotonic(), sock.recv(1024).decode()))
    assert proc.wait(10) == 0
    sock.close()
    messages = [m for _, m in received]
    assert messages[0] in ("WATCHDOG=1", "READY=1") and "READY=1" in messages
    pings = [t for t, m in received if m == "WATCHDOG=1"]
    gaps = sorted(b - a for a, b in zip(pings, pings[1:]))
    assert 6 <= len(pings) <= 14  # ~0.95 s of running loop at one ping per 0.1 s
    assert 0.05 < gaps[len(gaps) // 2] < 0.2, gaps  # the interval is half of WATCHDOG_USEC
    assert gaps[-1] >= 0.9, gaps  # the stalled loop sent nothing for a second


def test_notify_is_a_no_op_outside_systemd(monkeypatch):
    from edgeagent.runtime.service import notify, watchdog_interval_s

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert notify("READY=1") is False and watchdog_interval_s() is None


def test_journald_fields_when_stderr_is_the_journal(tmp_path, monkeypatch):
    pytest.importorskip("systemd.journal")
    stream = open(tmp_path / "stderr", "w")
    stat = os.fstat(stream.fileno())
    sent = []
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    import logging
    handler = make_handler(stream, sender=lambda MESSAGE, **fields: sent.append((MESSAGE, fields)))
    logger = logging.getLogger("edgeagent.test-journal")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("turn %s slow", "abc", extra={"TURN_ID": "abc123", "STAGE": "tts"})
    assert sent and sent[0][0] == "turn abc slow"
    fields = sent[0][1]
    assert fields["TURN_ID"] == "abc123" and fields["STAGE"] == "tts" and fields["SYSLOG_IDENTIFIER"] == "edgeagent"
    assert fields["PRIORITY"] == "4"
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # some other stream: plain stderr lines
    assert isinstance(make_handler(stream), logging.StreamHandler)


def test_install_service_in_a_scratch_root_is_idempotent_and_keeps_config(tmp_path):
    root = tmp_path / "root"
    run = lambda: subprocess.run(["sh", str(REPO / "systemd/install.sh"), "install"], cwd=REPO,  # noqa: E731
                                 env={**os.environ, "DESTDIR": str(root)}, capture_output=True, text=True)
    first = run()
    assert first.returncode == 0, first.stderr
    assert (root / "etc/systemd/system/edgeagent.service").read_text() == UNIT.read_text()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants/edgeagent.service") == \
        "/etc/systemd/system/edgeagent.service"
    assert (root / "opt/edgeagent/edgeagent/cli/__init__.py").exists() and (root / "opt/edgeagent/pyproject.toml").exists()
    dropin = (root / "etc/systemd/system/edgeagent.service.d/50-secrets.conf").read_text()
    assert "LoadCredential=mqtt.password:/etc/edgeagent/secrets/mqtt.password" in dropin
    assert (root / "etc/edgeagent/secrets/mqtt.password").exists()  # so the credential can always load
    assert not (root / "opt/edgeagent/.venv").exists()  # built only on a real install (or BUILD_VENV=1)
    config = root / "etc/edgeagent/config.toml"
    assert config.read_text() == (REPO / "systemd/config.example.toml").read_text()
    assert oct((root / "etc/edgeagent/secrets").stat().st_mode & 0o777) == "0o750"
    config.write_text("[audio]\nvolume = 0.3\n")
    spool = root / "var/lib/edgeagent/fleet/telemetry-spool/0001.json"
    spool.parent.mkdir(parents=True)
    spool.write_text("{}")
    second = run()
    assert second.returncode == 0 and "kept existing /etc/edgeagent/config.toml" in second.stdout
    assert config.read_text() == "[audio]\nvolume = 0.3\n" and spool.exists()  # upgrade keeps config and state
    removed = subprocess.run(["sh", str(REPO / "systemd/install.sh"), "uninstall"], cwd=REPO,
                             env={**os.environ, "DESTDIR": str(root)}, capture_output=True, text=True)
    assert removed.returncode == 0 and not (root / "opt/edgeagent").exists()
    assert config.exists() and spool.exists()


def test_example_config_loads():
    from edgeagent.config import load_config

    assert load_config(REPO / "systemd/config.example.toml", env={}).audio.volume == 0.8
