"""Doing things, through the whole daemon on generated speech: real wake word, VAD, Whisper, the
intent templates, the skills, piper, and (for home control) a real mosquitto.  Several voices
(piper, espeak-ng en-us and en-gb with a female variant) ask; the agent's WAV, the traces and the
device's state (timers.json, MQTT) are checked."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta

import numpy as np
import pytest

from edgeagent.config import apply_partial, load_config
from edgeagent.events import ReplyDone
from edgeagent.fleet.link import FleetLink
from edgeagent.intents.clock import say_time
from edgeagent.intents.honesty import claims_action
from edgeagent.runtime.remote import VoiceRemote
from edgeagent.runtime.stages import load_engines
from tests.fleet_support import device_config
from tests.speech import concat_wav, espeak_wav, piper_wav
from tests.test_agent_e2e import run_conversation
from tests.test_intents_mqtt import Responder


@pytest.fixture(scope="module")
def engines():
    config = load_config(None, env={})
    engines = load_engines(config)
    engines.router.local.max_tokens = 24
    yield engines
    engines.close()


@pytest.fixture
def config(tmp_path):
    """Each test its own state directory (its timers), no follow-up window."""
    base = load_config(None, env={})
    base.device.id = "test-device"
    return apply_partial(base, {"paths": {"state_dir": str(tmp_path / "state")}, "agent": {"follow_up_s": 0}})


def request(tmp_path, wav, name="user"):
    """The wake word (piper), then the request in its own voice."""
    return concat_wav(tmp_path / f"{name}.wav", [0.5, piper_wav("Alexa."), 0.3, wav, 1.0])


def converse(config, engines, user, tmp_path, **kwargs):
    return asyncio.run(run_conversation(config, engines, user, tmp_path, **kwargs))


def ask(config, engines, tmp_path, *asked):
    """Each request as its own conversation on the same device (state dir): one turn's reply never
    overlaps the next request however slow a loaded CI machine is.  (stages of the first, traces)"""
    first, traces = None, []
    for n, wav in enumerate(asked):
        stages, published, _ = converse(config, engines, request(tmp_path, wav, f"user{n}"), tmp_path, name=f"out{n}")
        first = first or stages
        traces += published
    return first, traces


def timers_on_disk(config) -> list[dict]:
    path = config.state_dir / "timers.json"
    return json.loads(path.read_text())["timers"] if path.exists() else []


def test_the_three_questions_get_true_answers_without_cloud_or_llm(config, engines, tmp_path):
    before = datetime.now().astimezone()
    stages, traces = ask(config, engines, tmp_path, piper_wav("Set a timer for ten minutes."),
                         espeak_wav("What time is it?", "en-us"), espeak_wav("Turn on the kitchen lights.", "en-gb+f3"))
    after = datetime.now().astimezone()
    assert [t["outcome"] for t in traces] == ["answered"] * 3, traces
    assert [t["intent"] for t in traces] == ["HassStartTimer", "HassGetCurrentTime", "HassTurnOn"]
    assert all(t["llm_backend"] == "none" and t["llm_tokens"] == 0 and t["intent_match_ms"] < 50 for t in traces)
    timer, clock_reply, lights = traces
    assert timer["heard_reply"] == "Timer set for 10 minutes." and timer["actions"][0]["done"] is True
    (stored,) = timers_on_disk(config)
    assert stored["duration_s"] == 600 and stored["kind"] == "timer"
    # the device's own clock, not an invented one: the answer names the minute it was asked in
    asked = {say_time(before + timedelta(seconds=s)) for s in range(0, int((after - before).total_seconds()) + 61)}
    assert clock_reply["heard_reply"] in {f"It's {t}." for t in asked}, clock_reply["heard_reply"]
    # no fleet link here: the agent says it did not turn the lights on, and claims nothing
    assert lights["heard_reply"] == "I can't turn on the kitchen lights: I'm not connected to a home system."
    assert lights["actions"][0] == {"name": "HassTurnOn", "done": False, "confirmed": False, "detail": "not sent"}
    assert not claims_action(lights["heard_reply"])
    assert all(t["speak_ms"] > 500 for t in traces)  # spoken, not just traced
    assert stages.conversation.turns[0] == ("Set a timer for 10 minutes.", "Timer set for 10 minutes.")


def test_bad_timer_lengths_get_a_spoken_question_and_set_nothing(config, engines, tmp_path):
    _, traces = ask(config, engines, tmp_path, espeak_wav("Set a timer for minus five minutes.", "en-us"),
                    piper_wav("Set a timer for a thousand hours."))
    assert [t["intent"] for t in traces] == ["HassStartTimer", "HassStartTimer"], traces
    assert traces[0]["heard_reply"] == "A timer needs a length above zero. How long should it run?"
    assert traces[1]["heard_reply"].startswith("I can set timers of up to 24 hours, not 1000 hours.")
    assert all(t["actions"][0]["done"] is False for t in traces) and timers_on_disk(config) == []


def test_the_local_llm_claims_nothing_it_did_not_do(config, engines, tmp_path):
    """Intents off: the three questions reach the embedded model, which is told the time and its
    limits; whatever it generates, no spoken reply says something was done, and nothing was."""
    llm_only = apply_partial(config, {"intents": {"enabled": False}})

    async def ask_all():
        from edgeagent.audio.wav import WavSink
        from edgeagent.runtime.stages import wire

        stages = wire(llm_only, engines, WavSink(tmp_path / "out.wav", 16000), [])  # plays at once: no frame clock
        engines.router.local.max_tokens = 16  # a sentence or two is enough to claim something
        said = []
        for question in ("Set a timer for ten minutes.", "What time is it?", "Turn on the kitchen lights."):
            events = [e async for e in stages.replier.answer(question).events()]
            said.append((question, events[-2].text, events[-1]))
        await stages.close()
        engines.router.local.max_tokens = 24
        return stages, said

    stages, said = asyncio.run(ask_all())
    for question, heard, done in said:
        assert isinstance(done, ReplyDone) and heard, (question, done)
        assert not claims_action(heard), (question, heard, done.text)
    assert timers_on_disk(config) == []
    messages = stages.conversation.messages_for("x")
    assert "cannot do any of it" in messages[0]["content"] and messages[-2]["content"].startswith("It is now")


def chime_seconds(audio: np.ndarray, rate: int = 16000) -> float:
    """Seconds of 20 ms frames dominated by the chime's first tone (1318 Hz) — speech has no such peak."""
    step, found = rate // 50, 0
    for start in range(0, len(audio) - step, step):
        frame = audio[start:start + step].astype(np.float32)
        if np.sqrt((frame ** 2).mean()) < 300:
            continue
        spectrum = np.abs(np.fft.rfft(frame * np.hanning(step)))
        peak_hz = np.argmax(spectrum) * rate / step
        found += abs(peak_hz - 1318.5) < 60
    return found * 0.02


def test_a_timer_set_by_voice_rings_after_a_restart_until_stop(config, engines, tmp_path):
    """Set by voice; the daemon restarts (new stages over the same state dir); the timer ends in real
    time, the agent says which one, chimes, and a spoken "stop" (a barge-in, then the stop intent) ends it."""
    ring = apply_partial(config, {"intents": {"ring_s": 60.0}})
    _, traces = ask(ring, engines, tmp_path, piper_wav("Set a timer for eight seconds."))
    assert traces[0]["heard_reply"] == "Timer set for 8 seconds." and len(timers_on_disk(ring)) == 1

    async def restarted():  # the same wiring the daemon does at start: timers run from READY on
        stop_at = 12.0
        user = concat_wav(tmp_path / "after.wav", [stop_at, espeak_wav("Okay, stop that.", "en-us"), 4.0])

        async def with_timers(stages):
            asyncio.get_running_loop().create_task(stages.replier.run_timers())

        return await run_conversation(ring, engines, user, tmp_path, name="rang", prepare=with_timers, realtime=True)

    stages, traces, audio = asyncio.run(restarted())
    heard = stages.speaker.heard()  # the last thing spoken: the answer to "stop" says nothing
    assert [t["intent"] for t in traces] == ["HassNevermind"], traces
    assert timers_on_disk(ring) == []
    stop_at = 12.0
    assert chime_seconds(audio[: int(stop_at * 16000)]) > 0.5  # it chimed before the user spoke
    assert chime_seconds(audio[int((stop_at + 2.5) * 16000):]) == 0  # and stopped when told to
    assert heard.text == ""


def test_a_light_command_reaches_mqtt_and_is_confirmed(tmp_path, engines, broker):
    """The daemon's own composition (FleetLink + VoiceRemote over the wired stages) on a real broker;
    a responder stands in for Home Assistant."""
    config = load_config(device_config(tmp_path, broker, "kitchen-speaker", agent={"follow_up_s": 0}))
    responder = Responder(broker, "edgeagent/kitchen-speaker/intent", {"ok": True})

    async def prepare(stages):
        remote = VoiceRemote(config)
        link = FleetLink(config, remote, on_config=remote.apply_config)
        remote.device_state.attach(link)
        remote.attach(stages)
        link.start()
        while not link.connected:
            await asyncio.sleep(0.02)

    try:
        user = request(tmp_path, piper_wav("Turn on the kitchen lights."))
        _, traces, _ = converse(config, engines, user, tmp_path, prepare=prepare)
    finally:
        responder.close()
    (trace,) = traces
    assert trace["intent"] == "HassTurnOn" and trace["heard_reply"] == "Done, the kitchen lights are on."
    assert trace["actions"][0]["confirmed"] is True
    (event,) = responder.events
    assert json.loads(event.payload)["turn_id"] == trace["turn_id"]
