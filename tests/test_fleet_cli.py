"""``edgeagent fleet`` against a real broker and a real device process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from edgeagent.fleet.stats import percentile, summarize
from tests.conftest import REPO
from tests.fleet_support import OPERATOR, Watcher, device_config, operator_command, start_device, stop_process


@pytest.fixture
def fleet(tmp_path, broker):
    """A running device 'porch' and a function running ``edgeagent fleet ...`` as the operator."""
    pw = tmp_path / "operator.password"
    pw.write_text(OPERATOR[1])
    watcher = Watcher(broker, ["edgeagent/porch/status"])
    proc = start_device(device_config(tmp_path, broker, "porch"))
    watcher.get(lambda m: m.payload == b"online", timeout=15)

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1", "--port", str(broker.port),
               "--username", OPERATOR[0], "--password-file", str(pw), *args]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, input=stdin)

    yield cli
    stop_process(proc)
    watcher.close()


def test_devices_send_and_config(fleet):
    out = fleet("devices")
    assert out.returncode == 0, out.stderr
    assert "porch" in out.stdout and "online" in out.stdout and "1/1 devices online" in out.stdout
    rows = json.loads(fleet("--json", "devices").stdout)
    assert rows[0]["device"] == "porch" and rows[0]["state"] == "idle" and rows[0]["volume"] == 0.8

    ping = fleet("--json", "send", "porch", "ping")
    assert ping.returncode == 0 and json.loads(ping.stdout)["pong"] is True
    vol = fleet("send", "porch", "volume", '{"volume": 0.4}')
    assert vol.returncode == 0 and '"volume": 0.4' in vol.stdout
    bad = fleet("send", "porch", "volume", '{"volume": "x"}')
    assert bad.returncode == 1 and "must be a number" in bad.stderr
    say = fleet("send", "porch", "say", '{"text": "hi"}')
    assert say.returncode == 1 and "voice loop not running" in say.stderr
    assert fleet("send", "porch", "ping", "{nope").returncode == 2

    ok = fleet("config", "porch", "vad.silence_ms=650", "llm.cloud_model=gpt-test")
    assert ok.returncode == 0, ok.stderr
    assert "applied: llm.cloud_model, vad.silence_ms" in ok.stdout
    merged = fleet("--json", "config", "porch", "stt.engine=pocketsphinx")  # merges with the retained desired
    report = json.loads(merged.stdout)
    assert report["config"]["vad"]["silence_ms"] == 650 and report["restart_required"] == ["stt.engine"]
    rejected = fleet("config", "porch", "vad.silence_ms=5")
    assert rejected.returncode == 1 and "vad.silence_ms" in rejected.stderr and "between" in rejected.stderr
    assert fleet("--json", "send", "porch", "ping").returncode == 0  # still alive


def test_tail_dedupes_and_stats_reads_what_tail_wrote(fleet, tmp_path, broker):
    collected = tmp_path / "traces.jsonl"
    tail = subprocess.Popen([sys.executable, "-m", "edgeagent", "fleet", "--host", "127.0.0.1",
                             "--port", str(broker.port), "--username", OPERATOR[0],
                             "--password-file", str(tmp_path / "operator.password"),
                             "tail", "--count", "3", "--output", str(collected)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "listening" in tail.stderr.readline()
    sender = Watcher(broker, [])
    try:
        for n, ttfa in ((1, 100.0), (1, 100.0), (2, 300.0), (3, 200.0)):  # turn 1 twice (QoS 1 duplicate)
            trace = {"turn_id": f"t{n}", "device_id": "porch", "started_at": "2026-11-24T04:00:00.000Z",
                     "ttfa_ms": ttfa, "outcome": "answered", "llm_backend": "local"}
            sender.client.publish("edgeagent/porch/telemetry/turn", json.dumps(trace), qos=1).wait_for_publish(5)
        out, _err = tail.communicate(timeout=30)
    finally:
        sender.close()
    assert tail.returncode == 0 and out.count("porch") == 3 and "ttfa=300ms" in out
    lines = collected.read_text().splitlines()
    assert [json.loads(line)["turn_id"] for line in lines] == ["t1", "t2", "t3"]
    # a duplicate on the input is ignored by stats too
    stats = fleet("--json", "stats", "--input", str(collected), "--input", "-", stdin=lines[0] + "\n")
    result = json.loads(stats.stdout)
    assert result["turns"] == 3 and result["duplicates"] == 1
    fleet_ttfa = next(s for s in result["stages"] if s["device"] == "(fleet)" and s["stage"] == "ttfa_ms")
    assert fleet_ttfa == {"device": "(fleet)", "stage": "ttfa_ms", "n": 3, "p50": 200.0, "p90": 280.0}
    table = fleet("stats", "--input", str(collected))
    assert "ttfa_ms" in table.stdout and "3 turns from 1 devices" in table.stdout


def test_stats_per_device_percentiles_and_window():
    traces = [{"turn_id": f"{d}-{i}", "device_id": d, "started_at": "2026-11-24T04:00:00Z",
               "llm_ttft_ms": float(i), "ttfa_ms": None} for d in ("a", "b") for i in range(1, 11)]
    traces.append({"turn_id": "old", "device_id": "a", "started_at": "2020-01-01T00:00:00Z", "llm_ttft_ms": 1e6})
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc)
    summary = summarize(traces, timedelta(hours=2), now=now)
    assert summary.turns == 20 and summary.outside_window == 1 and summary.devices == 2
    by = {(s.device, s.stage): s for s in summary.stages}
    assert by[("a", "llm_ttft_ms")].p50 == 5.5 and by[("a", "llm_ttft_ms")].p90 == 9.1
    assert by[("(fleet)", "llm_ttft_ms")].n == 20 and ("a", "ttfa_ms") not in by
    assert percentile([1.0], 0.9) == 1.0


JUNK = [b"[]", b"[1,2]", b"null", b'"text"', b"3", b"{", b"\xff\xfe", b'{"turn_id": 5}', b'{"state": {"a": [1]}}',
        b'{"turn_id":"k1","ttfa_ms":"abc"}', b'{"turn_id":"k2","device_id":"kitchen","started_at":{"x":1},'
        b'"ttfa_ms":[1],"llm_ttft_ms":true,"outcome":{"y":2},"error":["z"]}']


def test_the_cli_survives_any_device_payload(fleet, tmp_path, broker):
    """Finding 4: a stolen device login crashed `fleet devices` (retained `[]` state), `fleet tail`
    (ttfa_ms "abc") and `fleet stats` (`[1,2]`); every other device must still be listed."""
    broker.add_device("kitchen", "pw-kitchen")
    kitchen = Watcher(broker, ["edgeagent/kitchen/config/desired"], user=("kitchen", "pw-kitchen"),
                      port=broker.device_port)
    sender = Watcher(broker, [])
    try:
        for payload in JUNK:  # the last one stays retained
            kitchen.client.publish("edgeagent/kitchen/state", payload, qos=1, retain=True).wait_for_publish(5)
            devices = fleet("devices")
            assert devices.returncode == 0 and "Traceback" not in devices.stderr, (payload, devices.stderr)
            assert "porch" in devices.stdout and "online" in devices.stdout, devices.stdout
        kitchen.client.publish("edgeagent/kitchen/state", b"[]", qos=1, retain=True).wait_for_publish(5)
        listed = fleet("--json", "devices")
        assert listed.returncode == 0 and "porch" in [row["device"] for row in json.loads(listed.stdout)]
        assert "kitchen" in listed.stderr and "warning" in listed.stderr, listed.stderr

        good = {"turn_id": "good-1", "device_id": "porch", "started_at": "2026-11-24T04:00:00.000Z",
                "ttfa_ms": 420.0, "outcome": "answered", "llm_backend": "local"}
        password = tmp_path / "operator.password"
        for action in (["tail", "--duration", "8"], ["--json", "stats", "--listen", "8"]):
            proc = subprocess.Popen(operator_command(broker, password, *action), cwd=REPO, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(3)  # connected and subscribed
            for payload in JUNK:
                kitchen.client.publish("edgeagent/kitchen/telemetry/turn", payload, qos=1).wait_for_publish(5)
            sender.client.publish("edgeagent/porch/telemetry/turn", json.dumps(good), qos=1).wait_for_publish(5)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0 and "Traceback" not in err, (action, err)
            assert "kitchen" in err, err  # a warning names the device that sent it
            if action[0] == "tail":
                assert "ttfa=420ms" in out, out
            else:
                assert json.loads(out)["turns"] >= 1, out

        # a device answering its config with junk gets a warning, not a traceback
        kitchen.client.on_message = lambda c, _u, msg: c.publish("edgeagent/kitchen/config/reported", b"[]", qos=1)
        kitchen.client.publish("edgeagent/kitchen/config/desired", b"[1]", qos=1, retain=True).wait_for_publish(5)
        configured = fleet("--timeout", "3", "config", "kitchen", "vad.silence_ms=600")
        assert configured.returncode == 1 and "Traceback" not in configured.stderr, configured.stderr
        assert "kitchen" in configured.stderr
    finally:
        kitchen.close()
        sender.close()


LEAKS = ("sk-leak-1", "sk-leak-2", "sk-leak-3", "sk-leak-4", "sk-leak-5")


def test_misspelled_secrets_are_never_echoed_and_never_block_later_merges(fleet, tmp_path, broker):
    """Finding 10: misspelled secret keys were echoed in clear in config/reported, the device's log and
    the CLI's stderr, and every later `fleet config` merge was refused with that old error."""
    typo = fleet("config", "porch", "llm.cloud-api-key=sk-leak-1")
    assert typo.returncode == 1 and "llm.cloud-api-key" in typo.stderr, typo.stderr
    no_section = fleet("config", "porch", "cloud_apikey=sk-leak-2")
    assert no_section.returncode == 2 and "cloud_apikey" in no_section.stderr, no_section.stderr
    watcher = Watcher(broker, ["edgeagent/porch/config/reported"])
    try:
        for desired, key in (({"LLM": {"cloud_api_key": "sk-leak-3"}}, "LLM"),
                             ({"llm": {"cloud_apikey": "sk-leak-4"}}, "llm.cloud_apikey"),
                             ({"mqtt": {"pasword": "sk-leak-5"}}, "mqtt.pasword")):
            watcher.client.publish("edgeagent/porch/config/desired", json.dumps(desired), qos=1, retain=True)
            msg = watcher.get(lambda m: not m.retain and b'"last_error": {' in m.payload)
            report = json.loads(msg.payload)
            assert report["last_error"]["key"] == key, report["last_error"]
            assert not any(leak.encode() in msg.payload for leak in LEAKS), msg.payload
    finally:
        watcher.close()
    later = fleet("config", "porch", "vad.silence_ms=650")  # merges over the rejected retained document
    assert later.returncode == 0 and "applied: vad.silence_ms" in later.stdout, (later.stdout, later.stderr)
    for out in (typo, no_section, later):
        assert not any(leak in out.stdout + out.stderr for leak in LEAKS), out
    log = (tmp_path / "porch.log").read_text()
    assert not any(leak in log for leak in LEAKS), [line for line in log.splitlines() if "sk-leak" in line]
