"""Home control on a real mosquitto: the ``{p}/intent`` event, its MQTT 5 confirmation (or the lack
of one), and the Home Assistant event entity in discovery."""

from __future__ import annotations

import asyncio
import json
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeagent.config import apply_partial, load_config
from edgeagent.fleet.device import StandaloneDevice
from edgeagent.fleet.link import FleetLink
from edgeagent.intents.home import HomeControl
from edgeagent.intents.matcher import IntentMatcher
from tests.fleet_support import Watcher, device_config

LIGHTS = "Turn on the kitchen lights."


class Responder(Watcher):
    """Home Assistant (or any fleet backend) acting on ``{p}/intent``: answers each event with
    ``reply`` (None: stays silent), by MQTT 5 correlation data or, ``ha_style``, by the JSON id."""

    def __init__(self, broker, topic, reply, ha_style=False):
        super().__init__(broker, [topic])
        self.reply, self.ha_style, self.events = reply, ha_style, []
        self.client.on_message = self._on_event

    def _on_event(self, client, _userdata, msg):
        self.events.append(msg)
        if self.reply is None:
            return
        body = json.loads(msg.payload)
        if self.ha_style:  # HA's mqtt.publish sets no MQTT 5 properties: the id goes in the JSON
            client.publish(msg.topic + "/response", json.dumps({"id": body["id"], **self.reply}), qos=1)
            return
        props = Properties(PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        client.publish(msg.properties.ResponseTopic, json.dumps(self.reply), qos=1, properties=props)


def send(config, text=LIGHTS, stop_broker=None):
    """(what the agent would say, seconds it waited) for one home command through a real FleetLink."""
    matcher = IntentMatcher(config.intents)

    async def scenario():
        link = FleetLink(config, StandaloneDevice(config))
        link.start()
        while not link.connected:
            await asyncio.sleep(0.02)
        if stop_broker is not None:
            stop_broker()
            while link.connected:
                await asyncio.sleep(0.02)
        home = HomeControl(config.device.id, config.telemetry.include_text, config.intents.confirm_timeout_s)
        home.channel = link
        started = time.monotonic()
        sent = await home.send(matcher.match(text), "turn-42", text)
        waited = time.monotonic() - started
        await link.stop(timeout=1)
        return sent, waited

    return asyncio.run(scenario())


def test_a_confirmed_home_command_is_reported_done(tmp_path, broker):
    config = load_config(device_config(tmp_path, broker, "hall"))
    responder = Responder(broker, "edgeagent/hall/intent", {"ok": True})
    try:
        sent, _ = send(config)
    finally:
        responder.close()
    assert (sent.answer, sent.confirmed, sent.delivered) == ("Done, the kitchen lights are on.", True, True)
    (event,) = responder.events
    body = json.loads(event.payload)
    assert not event.retain and event.properties.ResponseTopic == "edgeagent/hall/intent/response"
    assert event.properties.CorrelationData == body["id"].encode() == sent.request_id.encode()
    assert {k: body[k] for k in ("event_type", "name", "slots", "confidence", "turn_id", "device_id")} == {
        "event_type": "HassTurnOn", "name": "HassTurnOn", "slots": {"area": "kitchen", "domain": "light"},
        "confidence": 1.0, "turn_id": "turn-42", "device_id": "hall"}
    assert "text" not in body  # telemetry.include_text is off


def test_home_assistant_style_response_by_id_and_its_speech(tmp_path, broker):
    config = load_config(device_config(tmp_path, broker, "den", telemetry={"include_text": True}))
    responder = Responder(broker, "edgeagent/den/intent", {"ok": True, "speech": "The kitchen is bright now."},
                          ha_style=True)
    try:
        sent, _ = send(config)
    finally:
        responder.close()
    assert (sent.answer, sent.confirmed) == ("The kitchen is bright now.", True)
    assert json.loads(responder.events[0].payload)["text"] == LIGHTS  # allowed here


def test_unanswered_or_refused_commands_are_never_reported_done(tmp_path, broker):
    config = load_config(device_config(tmp_path, broker, "loft", intents={"confirm_timeout_s": 0.5}))
    silent = Responder(broker, "edgeagent/loft/intent", None)
    try:
        sent, waited = send(config)
    finally:
        silent.close()
    assert len(silent.events) == 1 and (sent.confirmed, sent.delivered) == (False, True)
    assert sent.answer == "I sent the request to turn on the kitchen lights, but nothing has confirmed it yet."
    assert 0.5 <= waited < 2.0
    refusing = Responder(broker, "edgeagent/loft/intent", {"ok": False, "error": "the kitchen light is unavailable"})
    try:
        sent, _ = send(config)
    finally:
        refusing.close()
    assert sent.answer == "Your home system could not turn on the kitchen lights: the kitchen light is unavailable"
    assert sent.confirmed is False


def test_without_a_broker_the_command_is_not_sent_and_the_agent_says_so(tmp_path, broker):
    config = load_config(device_config(tmp_path, broker, "attic"))
    sent, _ = send(config, stop_broker=broker.stop)
    assert (sent.confirmed, sent.delivered) == (False, False)
    assert sent.answer == "I can't reach your home system right now, so I did not turn on the kitchen lights."
    assert HomeControl("x").channel is None
    unlinked = asyncio.run(HomeControl("x").send(IntentMatcher(config.intents).match(LIGHTS), "t", LIGHTS))
    assert unlinked.answer == "I can't turn on the kitchen lights: I'm not connected to a home system."


def test_discovery_has_an_event_entity_for_the_intents_on_the_devices_own_topics(tmp_path, broker):
    config = apply_partial(load_config(device_config(tmp_path, broker, "porch")),
                           {"intents": {"sentences": {"MovieNight": ["movie night"]}}})
    watcher = Watcher(broker, ["edgeagent/porch/discovery"])

    async def scenario():
        link = FleetLink(config, StandaloneDevice(config))
        link.start()
        while not link.connected:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        await link.stop(timeout=1)

    try:
        asyncio.run(scenario())
        document = json.loads(watcher.get().payload)
    finally:
        watcher.close()
    event = document["cmps"]["intent"]
    assert event["p"] == "event" and event["stat_t"] == "edgeagent/porch/intent"
    assert {"HassTurnOn", "HassTurnOff", "HassLightSet", "MovieNight"} <= set(event["evt_typ"])
    assert "HassStartTimer" not in event["evt_typ"]  # built-ins run on the device, they are no home events
    topics = [v for c in [document, *document["cmps"].values()] for k, v in c.items() if k.endswith("_t")]
    assert topics and all(t.startswith("edgeagent/porch/") for t in topics)


def test_operator_sentences_arrive_by_remote_config_and_join_discovery(tmp_path, broker):
    """An operator adds an intent through ``{p}/config/desired``: validated, applied live, announced
    as a new event type; a broken template is refused with the reason and changes nothing."""
    config = load_config(device_config(tmp_path, broker, "study"))
    watcher = Watcher(broker, ["edgeagent/study/discovery", "edgeagent/study/config/reported"])
    applied = []

    async def scenario():
        device = StandaloneDevice(config)
        link = FleetLink(config, device, on_config=lambda change: applied.append(change))
        link.start()
        while not link.connected:
            await asyncio.sleep(0.02)
        for desired in ({"intents": {"sentences": {"Fountain": ["<turn> on [the] garden fountain"]}}},
                        {"intents": {"sentences": {"Fountain": ["<turn> on {no_such_list}"]}}}):
            watcher.client.publish("edgeagent/study/config/desired", json.dumps(desired), qos=1, retain=True)
            await asyncio.sleep(0.8)
        await link.stop(timeout=1)
        return link

    try:
        link = asyncio.run(scenario())
        documents = [json.loads(m.payload) for m in list(watcher.messages.queue)
                     if m.topic == "edgeagent/study/discovery"]
        reported = [json.loads(m.payload) for m in list(watcher.messages.queue)
                    if m.topic == "edgeagent/study/config/reported"]
    finally:
        watcher.client.publish("edgeagent/study/config/desired", b"", qos=1, retain=True)
        watcher.close()
    assert [c.changed for c in applied] == [("intents.sentences",)] and not applied[0].restart_required
    assert IntentMatcher(link.config.intents).match("Turn on the garden fountain.").name == "Fountain"
    assert "Fountain" in documents[-1]["cmps"]["intent"]["evt_typ"]
    assert "unknown list {no_such_list}" in reported[-1]["last_error"]["reason"]
