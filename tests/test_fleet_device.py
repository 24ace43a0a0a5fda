"""The stand-alone device process against a real mosquitto: last will, commands, remote
config, Home Assistant discovery, and malformed-message resistance."""

from __future__ import annotations

import json
import re
import signal
import uuid

import psutil
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fleet_support import Watcher, device_config, discovery_relay, start_device, stop_process

P = "edgeagent/{}"


@pytest.fixture
def device(tmp_path, broker):
    """(device id, process, operator watcher subscribed to everything of that device)."""
    dev = "kitchen"
    watcher = Watcher(broker, [f"edgeagent/{dev}/#", "homeassistant/#"])
    proc = start_device(device_config(tmp_path, broker, dev))
    try:
        watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"online", timeout=15)
        yield dev, proc, watcher
    finally:
        out = stop_process(proc)
        watcher.close()
        assert "pw-kitchen" not in out, "the MQTT password leaked into the log"


def request(watcher: Watcher, dev: str, name: str, payload: bytes | str, mqtt5: bool = True) -> dict:
    """Send a command; wait for its result (response topic + correlation data, or /result)."""
    if isinstance(payload, str):
        payload = payload.encode()
    if mqtt5:
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"edgeagent/{dev}/reply/test"
        props.CorrelationData = corr
        watcher.client.publish(f"edgeagent/{dev}/cmd/{name}", payload, qos=1, properties=props)
        msg = watcher.get(lambda m: m.topic == f"edgeagent/{dev}/reply/test"
                          and getattr(m.properties, "CorrelationData", None) == corr)
        return json.loads(msg.payload)
    watcher.client.publish(f"edgeagent/{dev}/cmd/{name}", payload, qos=1)
    return watcher.get_json(f"edgeagent/{dev}/cmd/{name}/result")


def test_last_will_offline_after_sigkill(device):
    dev, proc, watcher = device
    proc.send_signal(signal.SIGKILL)
    proc.wait(5)
    msg = watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"offline", timeout=15)
    assert msg.topic.endswith("/status")
    # and it is retained: a newcomer sees the device as offline
    late = Watcher(watcher_broker(watcher), [f"edgeagent/{dev}/status"])
    try:
        assert late.get(lambda m: m.retain).payload == b"offline"
    finally:
        late.close()


def watcher_broker(watcher: Watcher):
    class _B:  # the Watcher only needs .port
        port = watcher.client._port
    return _B


def test_every_command_is_answered(device, broker):
    dev, _proc, watcher = device
    states = Watcher(broker, [f"edgeagent/{dev}/state"])  # apart: a state may come before or after a result
    ping = request(watcher, dev, "ping", "{}")
    assert ping["ok"] and ping["pong"] and ping["device_id"] == dev
    assert request(watcher, dev, "mute", '{"mute": true}') == {"ok": True, "command": "mute", "mute": True}
    state = states.get_json(f"edgeagent/{dev}/state", lambda s: s.get("mute") is True)
    assert state["version"] and "uptime_s" in state
    assert request(watcher, dev, "volume", '{"volume": 0.25}')["volume"] == 0.25
    assert states.get_json(f"edgeagent/{dev}/state", lambda s: s.get("volume") == 0.25)
    states.close()
    say = request(watcher, dev, "say", '{"text": "hello there"}')
    assert say == {"ok": False, "command": "say", "error": "not available: voice loop not running"}
    assert request(watcher, dev, "listen", "")["error"] == "not available: voice loop not running"
    assert request(watcher, dev, "cancel", "{}")["cancelled"] is False
    stats = request(watcher, dev, "stats", '{"id": "s1"}', mqtt5=False)
    assert stats["ok"] and stats["id"] == "s1" and stats["link"]["connected"] is True
    assert "telemetry" in stats["link"] and stats["device"]["voice_loop"] is False
    assert stats["state"] == {"state": "idle", "voice_loop": False, "mute": True, "volume": 0.25, "backend": None, "group": None,
                              "last_turn_ms": None}
    # plain MQTT (no response topic) gets /result
    assert request(watcher, dev, "ping", "", mqtt5=False)["pong"] is True
    # restart really restarts: offline, then online again, and it answers afterwards
    assert request(watcher, dev, "restart", "{}")["restarting"] is True
    watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"offline", timeout=15)
    watcher.get(lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"online", timeout=20)
    assert request(watcher, dev, "ping", "{}")["ok"]


@pytest.mark.parametrize("name,payload,reason", [
    ("volume", b"{not json", "not valid JSON"),
    ("volume", b'{"volume": "loud"}', "must be a number"),
    ("volume", b'{"volume": 7}', "between 0.0 and 1.0"),
    ("mute", b'{"mute": 1}', "must be true or false"),
    ("mute", b"[true]", "must be a JSON object"),
    ("say", b'{"text": ""}', "must not be empty"),
    ("say", b'{"text": "x", "shell": "rm -rf /"}', "unexpected argument 'shell'"),
    ("say", b'{"text": "' + b"a" * 5000 + b'"}', "payload too large"),
    ("format_disk", b"{}", "unknown command"),
    ("ping", b"\xff\xfe", "not valid JSON"),
])
def test_bad_commands_get_error_results(device, name, payload, reason):
    dev, _proc, watcher = device
    answer = request(watcher, dev, name, payload)
    assert answer["ok"] is False and reason in answer["error"], answer


def test_malformed_flood_leaves_device_running_with_flat_memory(device):
    dev, proc, watcher = device
    bad = [b"{", b"\x00" * 300, b'{"volume": null}', b"[]" * 100, b'{"text": 5}', b"9" * 4097]
    names = ["volume", "say", "mute", "nope", "restart/../x".replace("/", "_")]

    def flood(n: int) -> None:
        for i in range(n):
            if i % 10 == 9:  # broken desired config documents too (not retained)
                watcher.client.publish(f"edgeagent/{dev}/config/desired", bad[i % len(bad)], qos=1)
            else:
                watcher.client.publish(f"edgeagent/{dev}/cmd/{names[i % len(names)]}", bad[i % len(bad)], qos=1)
        request(watcher, dev, "ping", "{}")  # the queue is drained once this is answered
        while not watcher.messages.empty():
            watcher.messages.get_nowait()

    rss = psutil.Process(proc.pid).memory_info().rss
    flood(200)  # warm-up: allocator and caches settle
    before = psutil.Process(proc.pid).memory_info().rss
    flood(1000)
    after = psutil.Process(proc.pid).memory_info().rss
    print(f"device RSS: start {rss / 2**20:.1f} MiB, after warm-up {before / 2**20:.1f} MiB, "
          f"after 1,000 malformed messages {after / 2**20:.1f} MiB")
    assert proc.poll() is None
    assert after - before < 2 * 1024 * 1024, f"RSS grew {(after - before) / 1024:.0f} KiB (start {rss})"
    assert request(watcher, dev, "ping", "{}")["pong"] is True


def test_desired_config_applied_persisted_and_reported(tmp_path, device):
    dev, proc, watcher = device
    desired = {"audio": {"volume": 0.3}, "vad": {"silence_ms": 700}, "stt": {"engine": "pocketsphinx"}}
    watcher.client.publish(f"edgeagent/{dev}/config/desired", json.dumps(desired), qos=1, retain=True)
    reported = watcher.get_json(f"edgeagent/{dev}/config/reported",
                                lambda r: r["config"]["vad"]["silence_ms"] == 700)
    assert reported["last_error"] is None
    assert reported["changed"] == ["audio.volume", "stt.engine", "vad.silence_ms"]
    assert reported["restart_required"] == ["stt.engine"]
    assert reported["config"]["mqtt"]["password"] == "***"  # secrets never leave the device
    # applied live: the device's volume follows the config
    assert watcher.get_json(f"edgeagent/{dev}/state", lambda s: s.get("volume") == 0.3)
    persisted = tmp_path / f"state-{dev}" / "fleet" / "desired.json"
    assert json.loads(persisted.read_text()) == desired


def test_invalid_desired_config_rejected_and_nothing_changes(device):
    dev, _proc, watcher = device
    topic = f"edgeagent/{dev}/config/desired"
    watcher.client.publish(topic, json.dumps({"vad": {"silence_ms": 700}}), qos=1, retain=True)
    watcher.get_json(f"edgeagent/{dev}/config/reported", lambda r: r["config"]["vad"]["silence_ms"] == 700)
    for bad, key in (({"vad": {"silence_ms": 50, "aggressiveness": 1}}, "vad.silence_ms"),
                     ({"audio": {"volume": "max"}}, "audio.volume"),
                     ({"nosuch": {"x": 1}}, "nosuch"),
                     ({"device": {"id": "other"}}, "device.id"),
                     ({"paths": {"state_dir": "/"}}, "paths.state_dir"),
                     ("{broken", "<payload>")):
        payload = bad if isinstance(bad, str) else json.dumps(bad)
        watcher.client.publish(topic, payload, qos=1, retain=True)
        reported = watcher.get_json(f"edgeagent/{dev}/config/reported", lambda r: r["last_error"] is not None
                                    and r["last_error"]["key"] == key)
        assert reported["last_error"]["reason"]
        assert reported["config"]["vad"]["silence_ms"] == 700 and reported["config"]["vad"]["aggressiveness"] == 2
        assert reported["config"]["audio"]["volume"] == 0.8


def test_home_assistant_discovery_resent_on_birth(device, broker, tmp_path):
    """The device's document reaches HA through the discovery relay, and again on HA's birth message."""
    with discovery_relay(broker, tmp_path):
        _discovery_for_home_assistant(device, broker)


def _discovery_for_home_assistant(device, broker):
    dev, _proc, watcher = device
    topic = f"homeassistant/device/{dev}/config"
    doc = watcher.get_json(topic, timeout=20)
    assert doc["avty_t"] == f"edgeagent/{dev}/status" and doc["stat_t"] == f"edgeagent/{dev}/state"
    assert {c["p"] for c in doc["cmps"].values()} == {"sensor", "switch", "number", "button", "text", "event"}
    assert doc["cmps"]["mute"]["cmd_t"] == f"edgeagent/{dev}/cmd/mute"
    watcher.client.publish("homeassistant/status", "online", qos=1)
    assert watcher.get_json(topic)["dev"]["ids"] == [f"edgeagent_{dev}"]
    # the HA mute switch payload is a valid command
    states = Watcher(broker, [f"edgeagent/{dev}/state"])  # apart: the state may come before or after the result
    try:
        watcher.client.publish(doc["cmps"]["mute"]["cmd_t"], doc["cmps"]["mute"]["pl_on"], qos=1)
        assert watcher.get_json(f"edgeagent/{dev}/cmd/mute/result")["mute"] is True
        # every value template reads a field the state document has, and the switch's template
        # renders the state strings HA compares with (else HA would never show it as on)
        state = states.get_json(f"edgeagent/{dev}/state", lambda s: s.get("mute") is True)
    finally:
        states.close()
    for key in re.findall(r"value_json\.(\w+)", json.dumps(doc)):
        assert key in state, f"HA template reads {key!r}, the state has {sorted(state)}"
    mute = doc["cmps"]["mute"]
    assert mute["val_tpl"] == "{{ 'ON' if value_json.mute else 'OFF' }}"
    assert (mute["stat_on"], mute["stat_off"]) == ("ON", "OFF")


def test_broken_desired_config_never_echoes_its_text(device):
    dev, _proc, watcher = device
    watcher.client.publish(f"edgeagent/{dev}/config/desired", b'{"mqtt": {"password": "hunter2"', qos=1, retain=True)
    reported = watcher.get_json(f"edgeagent/{dev}/config/reported", lambda r: r["last_error"] is not None)
    assert "not valid JSON" in reported["last_error"]["reason"]
    assert "hunter2" not in json.dumps(reported)
