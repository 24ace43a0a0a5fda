"""The repo's mosquitto ACL: a device lives inside its own prefix; operators see everything."""

from __future__ import annotations

import queue

import pytest

from tests.fleet_support import Watcher


def users(broker):
    broker.add_user("deva", "pa")
    broker.add_user("devb", "pb")
    return ("deva", "pa"), ("devb", "pb")


def assert_nothing(watcher: Watcher, seconds: float = 1.0) -> None:
    with pytest.raises(queue.Empty):
        msg = watcher.messages.get(timeout=seconds)
        raise AssertionError(f"unexpected message on {msg.topic}: {msg.payload!r}")


def test_device_cannot_read_or_write_another_devices_topics(broker):
    a, b = users(broker)
    spy = Watcher(broker, ["edgeagent/devb/#", "edgeagent/+/telemetry/turn", "#"], user=a)
    b_client = Watcher(broker, ["edgeagent/devb/cmd/+"], user=b)
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


def test_device_may_publish_only_its_own_home_assistant_discovery(broker):
    a, _b = users(broker)
    device_a = Watcher(broker, [], user=a)
    ha = Watcher(broker, ["homeassistant/device/+/config"])
    try:
        device_a.client.publish("homeassistant/device/devb/config", b"{}", qos=1).wait_for_publish(5)
        device_a.client.publish("homeassistant/device/deva/config", b'{"ok": 1}', qos=1).wait_for_publish(5)
        msg = ha.get()
        assert msg.topic == "homeassistant/device/deva/config"
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
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        reason = reasons.get(timeout=5)
    finally:
        client.loop_stop()
    assert reason.is_failure, reason  # "Bad user name or password" / "Not authorized"
