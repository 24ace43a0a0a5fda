"""Remote config under attack, against the stand-alone device process and real mosquitto with the
repo's ACL: only keys that are safe to change remotely, no secrets to foreign hosts, nothing that
locks a device out of its broker, numbers that make sense, clear errors for hostile documents."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from edgeagent.config import build_config, resolve_runtime
from edgeagent.fleet.remote_config import RemoteConfig
from edgeagent.llm.router import LlmRouter, cloud_settings
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.turn.trace import utc_now_iso
from tests.cloud_fakes import RecordingCloud
from tests.fleet_support import Watcher, device_config, start_device, stop_process
from tests.test_fleet_device import device, request  # noqa: F401  (the fixture)


def strict_json(payload: bytes):
    """What a strict JSON reader (Home Assistant, jq, JavaScript) accepts: no NaN or Infinity."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(payload, parse_constant=refuse)


def desire(watcher: Watcher, dev: str, payload: bytes | str | dict, retain: bool = True) -> dict:
    """Publish a desired document and return the device's next (fresh, not retained) report."""
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    sent = utc_now_iso()

    def answers(msg) -> bool:  # the report on this document: applied or rejected after it was sent
        if msg.topic != f"edgeagent/{dev}/config/reported":
            return False
        report = strict_json(msg.payload)
        return (report["applied_at"] or "") >= sent or ((report["last_error"] or {}).get("at") or "") >= sent

    watcher.client.publish(f"edgeagent/{dev}/config/desired", payload, qos=1, retain=retain)
    return strict_json(watcher.get(answers).payload)


ATTACKER_ENDPOINTS = [
    "http://127.0.0.1:9/v1", "http://attacker.example:8080/v1", "file:///etc/passwd", "gopher://127.0.0.1:70/_x",
    "http://169.254.169.254/latest/meta-data", "https://169.254.169.254/latest/meta-data", "https://[::1]/v1",
    "https://localhost/v1", "https://metadata.google.internal/computeMetadata/v1", "https://api.evil.example/v1",
    "https://user:pass@api.openai.com.evil.example/v1",
]


def test_an_operator_cannot_point_the_cloud_endpoint_anywhere(device):
    """Finding 5: `llm.cloud_base_url` accepted any URL (http to an attacker, file://, gopher://, the
    cloud metadata address) and the next request carried the provisioned key."""
    dev, _proc, watcher = device
    for url in ATTACKER_ENDPOINTS:
        report = desire(watcher, dev, {"llm": {"cloud_base_url": url}})
        assert report["last_error"] and report["last_error"]["key"] == "llm.cloud_base_url", (url, report["last_error"])
        assert report["config"]["llm"]["cloud_base_url"] == "", url
        assert url not in json.dumps(report), "the rejected value is not echoed"


def test_a_provisioned_key_never_goes_to_a_host_it_was_not_provisioned_for(tmp_path):
    """Finding 5: a remote `cloud_base_url` was applied live and the next request carried
    `Authorization: Bearer <the locally provisioned key>` to the attacker."""
    provisioned, attacker = RecordingCloud(), RecordingCloud()
    base = resolve_runtime(build_config({"device": {"id": "box"}, "paths": {"state_dir": str(tmp_path)},
                                         "llm": {"cloud_base_url": provisioned.url, "cloud_api_key": "sk-provisioned"}}),
                           env={})
    remote = RemoteConfig(base, base.state_dir)

    async def scenario() -> None:
        router = LlmRouter(local=None, cloud=OpenAiChat.from_config(base.llm), cloud_settings=cloud_settings(base.llm))
        for desired in ({"llm": {"cloud_base_url": attacker.url}}, {"llm": {"cloud_base_url": attacker.url + "/"}}):
            change = remote.handle(json.dumps(desired).encode())
            if change is not None:  # as the daemon does: the live config reaches the router
                await router.configure(change.config.llm)
            async for _event in router.stream([{"role": "user", "content": "hello"}]):
                pass
        await router.cloud.close()

    try:
        asyncio.run(scenario())
    finally:
        provisioned.close()
        attacker.close()
    assert not any(attacker.authorizations()), "the key went to a host it was not provisioned for"
    assert provisioned.authorizations() and all(a == "Bearer sk-provisioned" for a in provisioned.authorizations())


def test_an_allowed_endpoint_gets_the_requests_but_never_the_key(tmp_path):
    """A locally allow-listed endpoint may be chosen remotely; the key stays with its own host."""
    provisioned, other = RecordingCloud(), RecordingCloud()
    base = resolve_runtime(build_config({
        "device": {"id": "box"}, "paths": {"state_dir": str(tmp_path)},
        "llm": {"cloud_base_url": provisioned.url, "cloud_api_key": "sk-provisioned",
                "cloud_allowed_hosts": ["api.openai.com", f"http://127.0.0.1:{other.port}"]}}), env={})
    remote = RemoteConfig(base, base.state_dir)
    assert remote.handle(json.dumps({"llm": {"cloud_base_url": "https://api.openai.com/v1"}}).encode()) is not None
    assert remote.handle(b'{"llm": {"cloud_base_url": "http://api.openai.com/v1"}}') is None  # https only
    assert "https" in remote.last_error["reason"]
    assert remote.handle(b'{"llm": {"cloud_base_url": "https://api.openai.com:8443/v1"}}') is not None

    async def ask(llm) -> None:
        router = LlmRouter(local=None, cloud=OpenAiChat.from_config(llm), cloud_settings=cloud_settings(llm))
        async for _event in router.stream([{"role": "user", "content": "hello"}]):
            pass
        await router.cloud.close()

    try:
        change = remote.handle(json.dumps({"llm": {"cloud_base_url": other.url}}).encode())
        assert change is not None, remote.last_error
        asyncio.run(ask(change.config.llm))
        back = remote.handle(b"{}")
        asyncio.run(ask(back.config.llm))
    finally:
        provisioned.close()
        other.close()
    assert other.authorizations() == [None], "an allowed endpoint still never gets the provisioned key"
    assert provisioned.authorizations() == ["Bearer sk-provisioned"]


class Listener:
    """A TCP port that records whether anything connected (an attacker's 'broker')."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                return count
            count += 1
            conn.close()


def restart_and_wait_online(watcher: Watcher, dev: str, timeout: float = 30) -> None:
    assert request(watcher, dev, "restart", "{}")["restarting"] is True
    watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"offline", timeout=15)
    watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"online", timeout=timeout)


def test_no_remote_message_locks_a_device_out_of_its_broker(device):
    """Findings 5 and 6: `{"mqtt":{"password":"x"}}` + restart locked the device out for good;
    `{"mqtt":{"port":...}}` + restart sent its MQTT user and password to that port."""
    dev, _proc, watcher = device
    attacker = Listener()
    try:
        for desired, key in (({"mqtt": {"password": "x"}}, "mqtt.password"),
                             ({"mqtt": {"port": attacker.port}}, "mqtt.port"),
                             ({"mqtt": {"host": "127.0.0.2", "keepalive_s": 3600}}, "mqtt.host"),
                             ({"mqtt": {"tls": True}}, "mqtt.tls")):
            report = desire(watcher, dev, desired)
            assert report["last_error"]["key"] == key, report["last_error"]
            assert "local" in report["last_error"]["reason"]
            restart_and_wait_online(watcher, dev)
            assert request(watcher, dev, "ping", "{}")["pong"] is True
        assert attacker.connections() == 0, "the device connected to the attacker's port"
    finally:
        attacker.sock.close()


def test_a_device_locked_out_by_a_persisted_document_comes_back(tmp_path, broker):
    """A desired document persisted by an older version (it accepted mqtt.*) no longer locks the
    device out: local-only keys in it are refused at boot as they would be over MQTT."""
    config = device_config(tmp_path, broker, "attic")
    persisted = tmp_path / "state-attic" / "fleet" / "desired.json"
    persisted.parent.mkdir(parents=True)
    persisted.write_text(json.dumps({"mqtt": {"password": "x"}, "vad": {"silence_ms": 700}}))
    watcher = Watcher(broker, ["edgeagent/attic/#"])
    proc = start_device(config)
    try:
        watcher.get(lambda m: m.topic == "edgeagent/attic/status" and m.payload == b"online", timeout=20)
        report = watcher.get_json("edgeagent/attic/config/reported")
        assert report["config"]["vad"]["silence_ms"] == 500 and report["last_error"]["key"] == "mqtt.password"
    finally:
        stop_process(proc)
        watcher.close()


PATHS = [({"telemetry": {"jsonl_path": "/tmp/x/evil/sub/pwned.jsonl"}}, "telemetry.jsonl_path"),
         ({"llm": {"local_model_path": "/etc/passwd"}}, "llm.local_model_path"),
         ({"llm": {"cloud_api_key_file": "/etc/shadow"}}, "llm.cloud_api_key_file"),
         ({"llm": {"cloud_api_key": "sk-new"}}, "llm.cloud_api_key"),
         ({"tts": {"voice": "/etc/passwd"}}, "tts.voice"),
         ({"stt": {"grammar": "/etc/passwd"}}, "stt.grammar"),
         ({"stt": {"vosk_model_dir": "/"}}, "stt.vosk_model_dir"),
         ({"mqtt": {"ca_file": "/tmp/evil-ca.pem"}}, "mqtt.ca_file"),
         ({"mqtt": {"password_file": "/etc/passwd"}}, "mqtt.password_file"),
         ({"audio": {"output_device": "hw:9"}}, "audio.output_device"),
         ({"wake": {"models": ["../../../../etc/passwd"]}}, "wake.models[0]"),
         ({"wake": {"stop_word": "/etc/passwd"}}, "wake.stop_word"),
         ({"tts": {"espeak_voice": "../../x"}}, "tts.espeak_voice")]


def test_file_paths_and_secrets_are_local_only(device):
    """Finding 7: telemetry.jsonl_path, llm.local_model_path, tts.voice, stt.grammar, mqtt.ca_file ...
    were accepted remotely (only paths.*, device.id and mqtt.topic_root were refused)."""
    dev, _proc, watcher = device
    for desired, key in PATHS:
        report = desire(watcher, dev, desired)
        assert report["last_error"] and report["last_error"]["key"] == key, (desired, report["last_error"])
        assert report["config"]["telemetry"]["jsonl_path"] == "" and report["config"]["tts"]["voice"] == ""
    # what is meant to be remote still is
    report = desire(watcher, dev, {"wake": {"models": ["hey_jarvis"], "thresholds": {"hey_jarvis": 0.6}},
                                   "llm": {"system_prompt": "Be brief.\nBe kind."}, "device": {"name": "Hall"}})
    assert report["last_error"] is None and report["config"]["wake"]["models"] == ["hey_jarvis"]


NONSENSE = [('{"wake": {"thresholds": {"okay_nabu": NaN}}}', "wake.thresholds.okay_nabu"),
            ('{"wake": {"thresholds": {"okay_nabu": -5}}}', "wake.thresholds.okay_nabu"),
            ('{"wake": {"thresholds": {"okay_nabu": Infinity}}}', "wake.thresholds.okay_nabu"),
            ('{"wake": {"thresholds": {"okay_nabu": 1e999}}}', "wake.thresholds.okay_nabu"),
            ('{"wake": {"threshold": -Infinity}}', "wake.threshold"),
            ('{"audio": {"volume": -0.0}}', "audio.volume"),
            ('{"vad": {"silence_ms": 600.5}}', "vad.silence_ms"),
            ('{"llm": {"temperature": NaN}}', "llm.temperature")]


def test_non_finite_and_out_of_range_numbers_are_rejected(device):
    """Finding 11: NaN, -5 and Infinity were accepted as wake thresholds (NaN reported as bare `NaN`,
    not JSON; -5 wakes on silence) and a volume of -0.0 was accepted."""
    dev, _proc, watcher = device
    for payload, key in NONSENSE:
        report = desire(watcher, dev, payload)  # strict JSON, or this raises
        assert report["last_error"] and report["last_error"]["key"] in (key, "<payload>"), (payload, report["last_error"])
        assert report["config"]["wake"]["thresholds"] == {} and report["config"]["audio"]["volume"] == 0.8
    for volume in ("-0.0", "NaN", "1e999", "-1e-300"):
        answer = request(watcher, dev, "volume", f'{{"volume": {volume}}}')
        assert answer["ok"] is False, (volume, answer)


def test_a_hostile_retained_document_at_start_gets_a_clear_error(tmp_path, broker):
    """Finding 12: a retained 10,000-deep `config/desired` at start raised RecursionError in the
    device and `last_error` stayed null."""
    watcher = Watcher(broker, ["edgeagent/cellar/#"])
    watcher.client.publish("edgeagent/cellar/config/desired", b"[" * 10000 + b"]" * 10000, qos=1,
                           retain=True).wait_for_publish(5)
    proc = start_device(device_config(tmp_path, broker, "cellar"))
    try:
        report = watcher.get_json("edgeagent/cellar/config/reported", lambda r: r["last_error"] is not None, timeout=20)
        assert "deep" in report["last_error"]["reason"], report["last_error"]
        assert request(watcher, "cellar", "ping", "{}")["pong"] is True
    finally:
        log = stop_process(proc)
        watcher.close()
    assert "Traceback" not in log and "RecursionError" not in log, log[-3000:]


@pytest.mark.parametrize("payload,reason", [
    ('{"device": {"name": "lone \\ud800 surrogate"}}', "surrogate"),
    ('{"llm": {"system_prompt": "bell \\u0007 and escape \\u001b[2J"}}', "control character"),
    ('{"wake": {"thresholds": {"a\\u0000b": 0.5}}}', "control character"),
    ('{"device": {"name": "x", "name": "y"}}', "duplicate"),
])
def test_text_in_a_desired_document_is_validated(device, payload, reason):
    dev, _proc, watcher = device
    report = desire(watcher, dev, payload)
    assert report["last_error"] and reason in report["last_error"]["reason"], report["last_error"]


def test_a_config_the_device_cannot_reach_its_broker_with_is_rolled_back(tmp_path, broker):
    """Shadow-style last good, for real: a device that starts with a new remote config and does not
    reach its broker within mqtt.rollback_after_s goes back to the last good config (restarting
    itself), reports the rollback once it is back, and refuses the retained document it rolled back."""
    config = device_config(tmp_path, broker, "loft", mqtt={"rollback_after_s": 3})
    watcher = Watcher(broker, ["edgeagent/loft/#"])
    proc = start_device(config)
    try:
        watcher.get(lambda m: m.topic == "edgeagent/loft/status" and m.payload == b"online", timeout=20)
        assert desire(watcher, "loft", {"stt": {"engine": "pocketsphinx"}})["restart_required"] == ["stt.engine"]
        stop_process(proc)
        watcher.close()
        broker.stop()  # the device starts with the new config and cannot reach its broker
        proc = start_device(config)
        time.sleep(7)  # past rollback_after_s: back to the last good config, by a restart
        broker.start()
        watcher = Watcher(broker, ["edgeagent/loft/#"])
        back = watcher.get_json("edgeagent/loft/config/reported", lambda r: r["rollback"] is not None, timeout=60)
        assert back["config"]["stt"]["engine"] == "whisper" and back["rollback"]["keys"] == ["stt.engine"]
        assert "not connected to the broker within 3 s" in back["rollback"]["reason"]
        refused = watcher.get_json("edgeagent/loft/config/reported", lambda r: r["last_error"] is not None, timeout=20)
        assert "rolled back" in refused["last_error"]["reason"] and refused["config"]["stt"]["engine"] == "whisper"
        assert request(watcher, "loft", "ping", "{}")["pong"] is True
    finally:
        log = stop_process(proc)
        watcher.close()
    assert "rolled back to the last good document" in log, log[-3000:]
