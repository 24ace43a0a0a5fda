"""Commands under attack, against the stand-alone device process and real mosquitto with the repo's
ACL: never retained, replies only into the requester's reply prefix, clear errors for hostile
payloads (depth, size, text)."""

from __future__ import annotations

import json
import uuid

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fleet_support import Watcher, assert_no_message
from tests.test_fleet_device import device, request  # noqa: F401  (the fixture)


def test_a_retained_command_is_ignored(device, broker):
    """Finding 8: a retained `cmd/restart` restarted the device 18 times in 60 s, until cleared."""
    dev, _proc, watcher = device
    watcher.client.publish(f"edgeagent/{dev}/cmd/restart", b"{}", qos=1, retain=True).wait_for_publish(5)
    answer = watcher.get_json(f"edgeagent/{dev}/cmd/restart/result")
    assert answer["ok"] is False and "retained" in answer["error"], answer
    assert_no_message(watcher, lambda m: m.topic == f"edgeagent/{dev}/status" and m.payload == b"offline", 8)
    late = Watcher(broker, [f"edgeagent/{dev}/cmd/+"])  # the device cleared it: nothing lingers for others
    try:
        assert_no_message(late, lambda m: m.retain and m.payload, 1.5)
    finally:
        late.close()
    assert request(watcher, dev, "ping", "{}")["pong"] is True


def ask_with_response_topic(watcher: Watcher, dev: str, name: str, response_topic: str, payload: bytes = b"{}") -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = response_topic
    props.CorrelationData = uuid.uuid4().bytes
    watcher.client.publish(f"edgeagent/{dev}/cmd/{name}", payload, qos=1, properties=props).wait_for_publish(5)


def test_a_reply_never_lands_on_the_devices_own_topics(device):
    """Finding 9: a ping with response topic `{p}/config/desired` made the device answer into its own
    config, which it then read back as desired config."""
    dev, _proc, watcher = device
    for topic in (f"edgeagent/{dev}/config/desired", f"edgeagent/{dev}/cmd/restart", f"edgeagent/{dev}/state",
                  f"edgeagent/{dev}/status", f"edgeagent/{dev}/reply", f"edgeagent/{dev}/replyx/1",
                  "edgeagent/other/reply/1", f"edgeagent/{dev}/reply/+", f"edgeagent/{dev}/reply/#"):
        ask_with_response_topic(watcher, dev, "ping", topic)
        answer = watcher.get_json(f"edgeagent/{dev}/cmd/ping/result")
        assert answer["ok"] is False and f"edgeagent/{dev}/reply/" in answer["error"], (topic, answer)
    assert_no_message(watcher, lambda m: m.topic in (f"edgeagent/{dev}/config/desired", f"edgeagent/{dev}/state",
                                                     f"edgeagent/{dev}/status", f"edgeagent/{dev}/cmd/restart"), 1)
    assert request(watcher, dev, "ping", "{}")["pong"] is True  # under the reply prefix: answered there


def test_deep_and_large_payloads_get_a_clear_error_reply(device):
    """Finding 12: JSON nested 2,000 deep within 4 KB on `cmd/ping` raised RecursionError: no reply."""
    dev, proc, watcher = device
    for payload, reason in ((b"[" * 2000 + b"]" * 2000, "nested deeper"),
                            (b'{"a":' * 600 + b"1" + b"}" * 600, "nested deeper"),
                            (b'{"id": "' + b"9" * 5000 + b'"}', "too large"),
                            (b'{"volume": ' + b"9" * 4000 + b"}", "between 0.0 and 1.0")):
        answer = request(watcher, dev, "volume" if b"volume" in payload else "ping", payload)
        assert answer["ok"] is False and reason in answer["error"], (payload[:40], answer)
    assert proc.poll() is None


def test_say_text_is_validated(device):
    """Finding 13: `say` with a lone surrogate answered ok and failed later with UnicodeEncodeError."""
    dev, _proc, watcher = device
    for text, reason in (('"lone \\ud800 surrogate"', "surrogate"), ('"\\udfff"', "surrogate"),
                         ('"bell \\u0007"', "control character"), ('"nul \\u0000"', "control character"),
                         ('"c1 \\u009b"', "control character"), ('"   "', "empty")):
        answer = request(watcher, dev, "say", f'{{"text": {text}}}')
        assert answer["ok"] is False and reason in answer["error"], (text, answer)
    answer = request(watcher, dev, "say", json.dumps({"text": "Line one.\nLine two, with ünïcode and emoji 🙂"}))
    assert answer["error"] == "not available: voice loop not running"  # valid text reaches the (absent) voice loop
