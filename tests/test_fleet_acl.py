"""The repo's mosquitto ACL: a device lives inside its own prefix; operators see everything."""

from __future__ import annotations

import json
import queue
import re

import pytest

from edgeagent.fleet.discovery import discovery_payload
from edgeagent.fleet.topics import Topics
from tests.fleet_support import (Watcher, assert_no_message, close_client, connect, device_config, discovery_relay,
                                 operator_cli, start_device, stop_process)
from tests.test_fleet_device import request


def users(broker):
    broker.add_device("deva", "pa")
    broker.add_device("devb", "pb")
    return ("deva", "pa"), ("devb", "pb")


def assert_nothing(watcher: Watcher, seconds: float = 1.0) -> None:
    with pytest.raises(queue.Empty):
        msg = watcher.messages.get(timeout=seconds)
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")


def test_device_cannot_read_or_write_another_devices_topics(broker):
    a, b = users(broker)
    spy = Watcher(broker, ["edgeagent/devb/#", "edgeagent/+/telemetry/turn", "#"], user=a, port=broker.device_port)
    b_client = Watcher(broker, ["edgeagent/devb/cmd/+"], user=b, port=broker.device_port)
    operator = Watcher(broker, ["edgeagent/#"])
    try:
        b_client.client.publish("edgeagent/devb/telemetry/turn", b'{"turn_id": "secret"}', qos=1).wait_for_publish(5)
        b_client.client.publish("edgeagent/devb/state", b'{"state": "idle"}', qos=1, retain=True).wait_for_publish(5)
        # the operator sees B's traffic ...
        assert operator.get(lambda m: m.topic == "edgeagent/devb/telemetry/turn").payload == b'{"turn_id": "secret"}'
        # ... device A sees none of it, neither live nor retained
        assert_nothing(spy)
        # A cannot command B: the broker drops A's publish to B's prefix
        spy.client.publish("edgeagent/devb/cmd/say", b'{"text": "hi"}', qos=1).wait_for_publish(5)
        assert_nothing(b_client)
        # A can still use its own prefix, and the operator can command B
        spy.client.publish("edgeagent/deva/status", b"online", qos=1, retain=True).wait_for_publish(5)
        assert operator.get(lambda m: m.topic == "edgeagent/deva/status").payload == b"online"
        operator.client.publish("edgeagent/devb/cmd/ping", b"{}", qos=1)
        assert b_client.get(lambda m: m.topic == "edgeagent/devb/cmd/ping").payload == b"{}"
    finally:
        for w in (spy, b_client, operator):
            w.close()


def test_device_writes_discovery_only_in_its_own_prefix(broker):
    """No device writes Home Assistant's topics, not even its own document: the relay does, checked."""
    a, _b = users(broker)
    device_a = Watcher(broker, [], user=a, port=broker.device_port)
    ha = Watcher(broker, ["homeassistant/device/+/config", "edgeagent/+/discovery"])
    try:
        device_a.client.publish("homeassistant/device/devb/config", b"{}", qos=1).wait_for_publish(5)
        device_a.client.publish("homeassistant/device/deva/config", b'{"ok": 1}', qos=1).wait_for_publish(5)
        device_a.client.publish("edgeagent/deva/discovery", b'{"ok": 2}', qos=1).wait_for_publish(5)
        msg = ha.get()
        assert (msg.topic, msg.payload) == ("edgeagent/deva/discovery", b'{"ok": 2}')
        assert_nothing(ha, 0.5)
    finally:
        device_a.close()
        ha.close()


def test_wrong_password_is_refused(broker):
    import paho.mqtt.client as mqtt

    users(broker)
    reasons: queue.Queue = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("deva", "wrong")
    client.on_connect = lambda _c, _u, _f, reason, _p: reasons.put(reason)
    client.connect("127.0.0.1", broker.device_port)
    client.loop_start()
    try:
        reason = reasons.get(timeout=5)
    finally:
        client.loop_stop()
    assert reason.is_failure, reason  # "Bad user name or password" / "Not authorized"


def test_a_device_login_cannot_knock_another_device_off(tmp_path, broker):
    """Finding 1: kitchen's login with hall's client id closed hall's session (its will said offline)."""
    hall = start_device(device_config(tmp_path, broker, "hall"))
    watcher = Watcher(broker, ["edgeagent/hall/#"])
    thieves = []
    try:
        watcher.get(lambda m: m.topic == "edgeagent/hall/status" and m.payload == b"online", timeout=15)
        broker.add_device("kitchen", "pw-kitchen")
        for port in (broker.device_port, broker.port):
            for client_id in ("edgeagent-hall", "hall"):  # what hall used before the binding, and after
                client, reason, _present = connect(port, ("kitchen", "pw-kitchen"), client_id)
                thieves.append(client)
        assert_no_message(watcher, lambda m: m.topic == "edgeagent/hall/status" and m.payload == b"offline", 3)
        assert request(watcher, "hall", "ping", "{}")["pong"] is True
    finally:
        for client in thieves:
            close_client(client)
        stop_process(hall)
        watcher.close()
    assert not re.search(r"Client (edgeagent-)?hall already connected", broker.log()), broker.log()


def test_a_device_login_cannot_take_an_operators_session(tmp_path, broker):
    """Finding 2: kitchen's login resumed `fleet tail --session seccol2`'s session and its queue was lost."""
    cli = operator_cli(broker, tmp_path)
    opened = cli("tail", "--session", "seccol2", "--duration", "1")
    assert opened.returncode == 0, opened.stderr
    broker.add_device("hall", "pw-hall")
    broker.add_device("kitchen", "pw-kitchen")
    hall = Watcher(broker, [], user=("hall", "pw-hall"), port=broker.device_port)
    trace = {"turn_id": "queued-1", "device_id": "hall", "started_at": "2026-11-24T04:00:00.000Z", "ttfa_ms": 500.0}
    hall.client.publish("edgeagent/hall/telemetry/turn", json.dumps(trace), qos=1).wait_for_publish(5)
    hall.close()
    for port in (broker.device_port, broker.port):
        for client_id in ("seccol2", "operator:seccol2"):
            try:
                client, reason, present = connect(port, ("kitchen", "pw-kitchen"), client_id, clean_start=False)
            except queue.Empty:
                continue
            close_client(client)
            assert reason.is_failure or not present, f"kitchen resumed session {client_id!r} on port {port}"
    resumed = cli("--json", "tail", "--session", "seccol2", "--count", "1", "--duration", "10")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[0])["turn_id"] == "queued-1", resumed


def evil_discovery(device: str, victim: str) -> dict:
    """A discovery document for ``device`` whose restart button commands ``victim``."""
    doc = discovery_payload(Topics("edgeagent", device), device, "1.0")
    doc["cmps"]["restart"]["cmd_t"] = f"edgeagent/{victim}/cmd/restart"
    return doc


def foreign_topics(doc: dict, device: str) -> list[str]:
    """Every topic-valued field of an HA discovery document outside the device's own prefix."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and (key in ("t", "topic", "~") or key.endswith(("_t", "_topic"))):
                    if not value.startswith(f"edgeagent/{device}/"):
                        found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(doc)
    return found


def test_home_assistant_sees_only_discovery_that_references_the_devices_own_topics(tmp_path, broker):
    """Finding 3: a stolen login published discovery for its own id whose restart button commands hall
    (retained; HA would then press it with HA's rights)."""
    broker.add_device("kitchen", "pw-kitchen")
    with discovery_relay(broker, tmp_path) as relay_log:
        ha = Watcher(broker, ["homeassistant/device/+/config"])
        kitchen = Watcher(broker, [], user=("kitchen", "pw-kitchen"), port=broker.device_port)
        porch = start_device(device_config(tmp_path, broker, "porch"))
        try:
            evil = json.dumps(evil_discovery("kitchen", "hall"))
            for topic in ("homeassistant/device/kitchen/config", "edgeagent/kitchen/discovery"):
                kitchen.client.publish(topic, evil, qos=1, retain=True).wait_for_publish(5)
            # a real device's discovery still reaches HA, and references only its own topics
            doc = ha.get_json("homeassistant/device/porch/config", timeout=20)
            assert doc["cmps"]["restart"]["cmd_t"] == "edgeagent/porch/cmd/restart"
            assert foreign_topics(doc, "porch") == []
            assert_no_message(ha, lambda m: m.topic == "homeassistant/device/kitchen/config", 2)
        finally:
            kitchen.close()
            ha.close()
            stop_process(porch)
    late = Watcher(broker, ["homeassistant/device/+/config"])  # nothing evil retained either
    try:
        assert_no_message(late, lambda m: bool(foreign_topics(json.loads(m.payload or b"{}"), m.topic.split("/")[2])), 1)
    finally:
        late.close()
    assert "edgeagent/hall/cmd/restart" in relay_log.read_text(), "the relay says what it refused"
