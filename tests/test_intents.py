"""Intents before the LLM: matching, the built-in skills on a scripted clock, persistence, honesty
checks, and LLM tool calls against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from edgeagent.audio.playout import Speaker
from edgeagent.audio.wav import WavSink
from edgeagent.config import ConfigError, IntentsConfig, apply_partial, load_config
from edgeagent.events import ActionDone, LlmToken
from edgeagent.intents.clock import next_clock_time
from edgeagent.intents.home import HomeControl
from edgeagent.intents.honesty import LIMITS, UNDONE, ClaimVet, claims_action, time_note
from edgeagent.intents.matcher import IntentMatcher
from edgeagent.intents.normalize import normalize
from edgeagent.intents.skills import Skills, Volume
from edgeagent.intents.timers import Timer, TimerSchedule, TimerStore, say_duration
from edgeagent.intents.tools import ToolBox
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.llm.router import LlmRouter
from edgeagent.tts.espeak_voice import EspeakSynthesizer


class ScriptedClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = datetime(2026, 12, 2, 21, 38, tzinfo=timezone.utc).timestamp()):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def matcher():
    return IntentMatcher(IntentsConfig())


@pytest.fixture
def skills(tmp_path):
    clock = ScriptedClock()
    config = apply_partial(load_config(None, env={}), {"device": {"timezone": "America/New_York"}})
    speaker = Speaker(EspeakSynthesizer(), WavSink(tmp_path / "unused.wav"), volume=0.8, realtime=False)
    return Skills(config, TimerStore(tmp_path / "timers.json", clock), Volume(speaker), HomeControl("dev"))


async def run(skills, matcher, text):
    match = matcher.match(text)
    assert match is not None, text
    return await skills.run(match, "turn-1", text)


def say(skills, matcher, text):
    return asyncio.run(run(skills, matcher, text))


MATCHES = [
    ("Set a timer for ten minutes.", "HassStartTimer", {"minutes": 10}),
    ("Set a 10-minute timer.", "HassStartTimer", {"minutes": 10}),
    ("Set a pasta timer for 5 minutes.", "HassStartTimer", {"minutes": 5, "name": "pasta"}),
    ("Set a timer for 1 hour and 30 minutes.", "HassStartTimer", {"hours": 1, "minutes": 30}),
    ("Set a timer for an hour and a half.", "HassStartTimer", {"fixed": 5400}),
    ("Set a timer for minus five minutes.", "HassStartTimer", {"minutes": -5}),
    ("Set a timer for a thousand hours.", "HassStartTimer", {"hours": 1000}),
    ("Set a timer for 1,000 hours.", "HassStartTimer", {"hours": 1000}),
    ("How much time is left on my timer?", "HassTimerStatus", {}),
    ("What timers do I have?", "HassTimerStatus", {}),
    ("Cancel the pasta timer.", "HassCancelTimer", {"name": "pasta"}),
    ("Cancel all timers.", "HassCancelAllTimers", {}),
    ("Set an alarm for 7:30 a.m.", "EdgeSetAlarm", {"hour": 7, "minute": 30, "period": "am"}),
    ("Wake me up at 6 in the morning.", "EdgeSetAlarm", {"hour": 6, "period": "am"}),
    ("What time is it?", "HassGetCurrentTime", {}),
    ("What's the date today?", "HassGetCurrentDate", {}),
    ("Set the volume to 50%.", "HassSetVolume", {"volume": 50}),
    ("Turn it up.", "HassSetVolumeRelative", {"volume_step": "up"}),
    ("Quieter, please.", "HassSetVolumeRelative", {"volume_step": "down"}),
    ("Mute.", "HassMediaPlayerMute", {}),
    ("Stop.", "HassNevermind", {}),
    ("What can you do?", "EdgeCapabilities", {}),
    ("Turn on the kitchen lights.", "HassTurnOn", {"area": "kitchen", "domain": "light"}),
    ("Turn off the living room lights.", "HassTurnOff", {"area": "living room", "domain": "light"}),
    ("Set a timer for ten minuets.", "HassStartTimer", {"minutes": 10}),  # an STT slip, corrected
]


@pytest.mark.parametrize("text,name,slots", MATCHES, ids=[m[0] for m in MATCHES])
def test_sentences_match_their_intent_and_slots(matcher, text, name, slots):
    match = matcher.match(text)
    assert match is not None and (match.name, match.slots) == (name, slots)
    assert match.confidence == (1.0 if "minuets" not in text else pytest.approx(0.857, abs=0.01))


MISHEARD = [  # what Whisper tiny.en wrote for generated speech (benchmarks/bench_intents.py)
    ("Shaker timer for 10 minutes.", "HassStartTimer", {"minutes": 10}, 0.85),
    ("turn on my kitchen life", "HassTurnOn", {"area": "kitchen", "domain": "light"}, 0.8),
    ("cancelled the timer", "HassCancelTimer", {}, 0.8),
    ("Check on the alarm for 730 in the morning", "EdgeSetAlarm", {"hour": 7, "minute": 30, "period": "am"}, 0.7),
]


@pytest.mark.parametrize("text,name,slots,confidence", MISHEARD, ids=[m[0] for m in MISHEARD])
def test_misheard_commands_are_corrected_with_less_confidence(matcher, text, name, slots, confidence):
    match = matcher.match(text)
    assert (match.name, match.slots) == (name, slots) and match.confidence == pytest.approx(confidence)


@pytest.mark.parametrize("text", ["What is the capital of France?", "Tell me a story about a dragon.",
                                  "Why is the sky blue?", "Stop the war in my head, please tell me a poem.",
                                  "Don't set a timer for ten minutes.", "Do not turn on the kitchen lights.",
                                  "What is the meaning of life?"])
def test_everything_else_goes_to_the_llm(matcher, text):
    assert matcher.match(text) is None


def test_normalize_writes_what_stt_writes_as_the_templates_expect():
    assert normalize("Wake me up at 7:30 a.m.") == "wake me up at 7 30 am"
    assert normalize("Set a timer for minus 5 minutes.") == "set a timer for -5 minutes"
    assert normalize("Set the volume to 50%!") == "set the volume to 50 percent"
    assert normalize("What’s the time?") == "what's the time"


def test_operator_sentences_are_matched_and_validated(tmp_path):
    config = apply_partial(load_config(None, env={}), {"intents": {
        "names": ["fountain", "scene:dinner"], "sentences": {"MovieNight": ["(start|begin) movie night", "it's movie time"]}}})
    matcher = IntentMatcher(config.intents)
    assert matcher.match("Start movie night!").name == "MovieNight"
    assert (matcher.match("Turn on the fountain.").name, matcher.match("Turn on the fountain.").slots) == \
        ("HassTurnOn", {"name": "fountain"})
    assert matcher.match("Activate the dinner scene.").name == "HassTurnOn"
    for bad, why in (({"Movie Night": ["x"]}, "name intents"), ({"X": ["turn on {nope}"]}, "unknown list"),
                     ({"HassStartTimer": ["go"]}, "not a built-in"), ({"X": ["(open"]}, "not a valid"),
                     ({"X": []}, "give 1 to")):
        with pytest.raises(ConfigError, match=why):
            apply_partial(config, {"intents": {"sentences": bad}})


# ---------------------------------------------------------------- timers on a scripted clock


def test_timers_ring_when_due_and_wait_while_the_agent_is_busy(tmp_path):
    clock = ScriptedClock()
    store = TimerStore(tmp_path / "timers.json", clock)
    busy, offered = [True], []

    def ring(timers):
        offered.append([t.label() for t in timers])
        return not busy[0]

    schedule = TimerSchedule(store, ring)
    store.add(Timer("timer", clock() + 600, 600))
    store.add(Timer("timer", clock() + 300, 300, "pasta"))
    clock.advance(299)
    assert schedule.check() == [] and offered == []
    clock.advance(2)
    assert schedule.check() == [] and offered == [["pasta timer"]]  # busy: offered, not taken
    busy[0] = False
    rung = schedule.check()
    assert [t.name for t in rung] == ["pasta"] and schedule.check() == []  # ringing: not offered twice
    schedule.rung(rung)
    assert [t.label() for t in TimerStore(tmp_path / "timers.json", clock).timers] == ["10 minute timer"]


def test_timers_survive_a_restart_and_one_due_meanwhile_rings_at_start(tmp_path):
    clock = ScriptedClock()
    TimerStore(tmp_path / "timers.json", clock).add(Timer("timer", clock() + 60, 60, "tea"))
    clock.advance(3600)  # the daemon was off (or the device rebooted) for an hour
    rung = []
    schedule = TimerSchedule(TimerStore(tmp_path / "timers.json", clock), lambda timers: rung.extend(timers) or True)
    schedule.check()
    assert [t.name for t in rung] == ["tea"]


def test_a_corrupt_timers_file_is_reported_and_replaced(tmp_path, caplog):
    (tmp_path / "timers.json").write_text("{not json")
    store = TimerStore(tmp_path / "timers.json")
    assert store.timers == [] and "ignoring unreadable" in caplog.text
    store.add(Timer("timer", store.clock() + 5, 5))
    assert len(json.loads((tmp_path / "timers.json").read_text())["timers"]) == 1


def test_timer_skills_set_list_cancel_and_clarify_bad_lengths(skills, matcher):
    assert say(skills, matcher, "Set a timer for ten minutes.").answer == "Timer set for 10 minutes."
    assert say(skills, matcher, "Set a pasta timer for 5 minutes.").answer == "Pasta timer set for 5 minutes."
    skills.timers.clock.advance(70)
    assert say(skills, matcher, "How much time is left on my timers?").answer == \
        "Pasta timer has 3 minutes and 50 seconds left and 10 minute timer has 8 minutes and 50 seconds left."
    ambiguous = say(skills, matcher, "Cancel the timer.")
    assert not ambiguous.done and ambiguous.answer.startswith("Which one?")
    assert say(skills, matcher, "Cancel the pasta timer.").answer == "Okay, I cancelled the pasta timer."
    for text, answer in (("Set a timer for minus five minutes.", "A timer needs a length above zero. How long should it run?"),
                         ("Set a timer for a thousand hours.",
                          "I can set timers of up to 24 hours, not 1000 hours. How long should it run?")):
        outcome = say(skills, matcher, text)
        assert (outcome.answer, outcome.done) == (answer, False)
    assert [t.label() for t in skills.timers.active()] == ["10 minute timer"]  # nothing set by a bad request
    assert say(skills, matcher, "Cancel all timers.").answer == "Okay, I cancelled your timer."
    assert say(skills, matcher, "What timers do I have?").answer == "You have no timers."


def test_time_date_and_alarms_in_the_configured_time_zone(skills, matcher):
    # the scripted clock: 2026-12-02 21:38 UTC, a Wednesday; the device is in New York (UTC-5)
    assert say(skills, matcher, "What time is it?").answer == "It's 4:38 PM."
    assert say(skills, matcher, "What's the date today?").answer == "Today is Wednesday, December 2, 2026."
    assert say(skills, matcher, "Wake me up at 7:30 a.m.").answer == "Alarm set for 7:30 AM tomorrow."
    assert say(skills, matcher, "Set an alarm for 6 pm.").answer == "Alarm set for 6:00 PM today."
    alarm, _ = skills.timers.active("alarm")
    assert alarm.left_s(skills.timers.clock()) == 82 * 60  # 6 PM today in New York is 1 h 22 min away
    assert say(skills, matcher, "Cancel my alarms.").answer == "Okay, I cancelled 2 alarms."


def test_a_clock_time_without_am_or_pm_is_the_next_one():
    evening = datetime(2026, 12, 2, 19, 0)
    assert next_clock_time(evening, 7, 30, None) == datetime(2026, 12, 2, 19, 30)
    assert next_clock_time(evening, 7, 30, "am") == datetime(2026, 12, 3, 7, 30)
    assert next_clock_time(evening, 12, 0, "am") == datetime(2026, 12, 3, 0, 0)


def test_volume_set_step_and_mute_act_on_the_speaker(skills, matcher):
    speaker, reported = skills.volume.speaker, []
    skills.volume.on_change = reported.append
    assert say(skills, matcher, "Set the volume to 50%.").answer == "Volume 50 percent." and speaker.volume == 0.5
    assert say(skills, matcher, "Set the volume to 3.").answer == "Volume 30 percent."  # 0-10 without "percent"
    assert say(skills, matcher, "Louder.").answer == "Volume 40 percent."
    assert say(skills, matcher, "Mute.").answer == "" and speaker.volume == 0.0
    assert say(skills, matcher, "Unmute.").answer == "Sound is back on, at 40 percent." and speaker.volume == 0.4
    assert reported == [0.5, 0.3, 0.4, 0.0, 0.4]  # the fleet's state hears every change


def test_say_duration():
    assert say_duration(5400) == "1 hour and 30 minutes"
    assert say_duration(3725) == "1 hour, 2 minutes and 5 seconds"
    assert say_duration(600, unit_form=True) == "10 minute"


# ---------------------------------------------------------------- honesty


@pytest.mark.parametrize("text,claim", [
    ("I've set a timer for ten minutes.", True), ("The kitchen lights are now on.", True),
    ("I'll turn on the lights for you.", True), ("Done!", True), ("Your timer is set.", True),
    ("I'm here to help, not to distract you.", False), ("The capital of France is Paris.", False),
    ("I can't do that from here.", False), ("Have you done your homework?", False), (UNDONE, False)])
def test_claims_of_actions_are_recognised(text, claim):
    assert claims_action(text) is claim


def test_the_vet_replaces_claims_unless_a_tool_acted():
    vet = ClaimVet()
    assert vet("Sure thing.") == "Sure thing."
    assert vet("I've turned on the kitchen lights.") == UNDONE and vet("They are now on.") == "They are now on."
    assert vet("The lights are on.") == ""  # said once, not at every claim
    acted = ClaimVet()
    acted.acted = True
    assert acted("I've set a timer for ten minutes.") == "I've set a timer for ten minutes."


def test_the_llm_is_told_the_time_last_and_its_limits_first():
    from edgeagent.llm.conversation import Conversation

    now = datetime(2026, 12, 2, 21, 38, tzinfo=timezone.utc)
    conversation = Conversation("Be brief.", limits=LIMITS, note=lambda: time_note(now))
    conversation.record("Hi.", "Hello.")
    messages = conversation.messages_for("What time is it?")
    assert messages[0] == {"role": "system", "content": "Be brief." + LIMITS} and "cannot do any of it" in LIMITS
    assert messages[-2:] == [{"role": "system", "content": "It is now 9:38 PM on Wednesday, December 2, 2026 (UTC)."},
                             {"role": "user", "content": "What time is it?"}]


# ---------------------------------------------------------------- tools for a cloud LLM


class ToolCallingServer:
    """A real OpenAI-compatible HTTP server on loopback whose model asks for a tool first, then
    answers in text; it keeps the requests it got."""

    def __init__(self, call: dict):
        self.call, self.requests = call, []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc):
        self.server.close()

    async def _handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        request = json.loads(await reader.readexactly(length))
        self.requests.append(request)
        if len(self.requests) == 1:  # the tool call, in pieces as OpenAI streams it
            name, args = self.call["name"], json.dumps(self.call["arguments"])
            deltas = [{"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": name, "arguments": ""}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": args[:7]}}]},
                      {"tool_calls": [{"index": 0, "function": {"arguments": args[7:]}}]}]
        else:
            result = json.loads(request["messages"][-1]["content"])
            deltas = [{"content": "I've set a timer " if result["done"] else "I could not "},
                      {"content": "for ten minutes." if result["done"] else "do that."}]
        body = b"".join(b"data: " + json.dumps({"choices": [{"delta": d}]}).encode() + b"\n\n" for d in deltas)
        body += b"data: [DONE]\n\n"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


async def stream_with_tools(server: ToolCallingServer, skills, matcher, text: str) -> list:
    """One routed answer from the tool-calling server (the only backend), with the device's tools."""
    async with server as base:
        router = LlmRouter(None, OpenAiChat(base, "m"), first_token_deadline_s=5)
        events = [e async for e in router.stream([{"role": "user", "content": text}],
                                                 ToolBox(skills, matcher).for_turn("turn-1", text))]
        await router.cloud.close()
        return events


def test_the_cloud_calls_a_skill_as_a_tool_and_answers_from_its_result(skills, matcher):
    server = ToolCallingServer({"name": "set_timer", "arguments": {"seconds": 600}})
    events = asyncio.run(stream_with_tools(server, skills, matcher, "ten minute timer please"))
    assert [t.label() for t in skills.timers.active()] == ["10 minute timer"]  # the tool really set it
    actions = [e for e in events if isinstance(e, ActionDone)]
    assert [(a.name, a.done) for a in actions] == [("tool:set_timer", True)]
    assert "".join(e.text for e in events if isinstance(e, LlmToken)) == "I've set a timer for ten minutes."
    first, second = server.requests
    assert {t["function"]["name"] for t in first["tools"]} >= {"set_timer", "get_time", "home_command"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "set_timer"
    assert json.loads(second["messages"][-1]["content"]) == {"done": True, "said": "Timer set for 10 minutes."}


def test_a_bad_tool_call_is_answered_not_raised(skills, matcher):
    server = ToolCallingServer({"name": "home_command", "arguments": {"command": "launch the rocket"}})
    events = asyncio.run(stream_with_tools(server, skills, matcher, "launch"))
    assert [(e.name, e.done) for e in events if isinstance(e, ActionDone)] == [("tool:home_command", False)]
    assert json.loads(server.requests[1]["messages"][-1]["content"])["done"] is False
    assert "".join(e.text for e in events if isinstance(e, LlmToken)) == "I could not do that."


def test_a_skill_that_fails_is_said_and_traced_not_hung(tmp_path, skills, matcher):
    """The timers file cannot be written (its folder is a file): the turn still ends, with an apology."""
    from edgeagent.events import ActionDone, IntentMatched, ReplyDone
    from edgeagent.intents.replier import FAILED, IntentReplier
    from edgeagent.llm.conversation import Conversation
    from edgeagent.turn.reply import ReplyPipeline

    (tmp_path / "blocked").write_text("")
    skills.timers.path = tmp_path / "blocked" / "timers.json"
    config = load_config(None, env={})

    async def main():
        pipeline = ReplyPipeline(None, Conversation(""), skills.volume.speaker)
        replier = IntentReplier(pipeline, matcher, skills, config)
        return [e async for e in replier.answer("Set a timer for ten minutes.", "t1").events()]

    events = asyncio.run(main())
    assert isinstance(events[0], IntentMatched) and isinstance(events[-1], ReplyDone)
    (action,) = [e for e in events if isinstance(e, ActionDone)]
    assert action.done is False and "FileExistsError" in action.detail
    assert events[-1].text == FAILED and skills.timers.timers == []  # not said to be set, and not set


def test_running_timers_are_published_for_the_screen_as_they_change(skills, matcher):
    """The kiosk's screen shows the running timers (TimersChanged): at start, once set, once cancelled."""
    from edgeagent.events import TimersChanged
    from edgeagent.intents.replier import IntentReplier
    from edgeagent.llm.conversation import Conversation
    from edgeagent.turn.reply import ReplyPipeline

    shown = []

    async def main():
        replier = IntentReplier(ReplyPipeline(None, Conversation(""), skills.volume.speaker), matcher, skills,
                                load_config(None, env={}), on_event=lambda event, turn: shown.append(event))
        clock = asyncio.create_task(replier.run_timers())
        for text in ("Set a pasta timer for 5 minutes.", "Cancel the pasta timer."):
            await asyncio.sleep(0.05)
            [e async for e in replier.answer(text, "t").events()]
        await asyncio.sleep(0.05)
        clock.cancel()

    asyncio.run(main())
    assert all(isinstance(e, TimersChanged) for e in shown)
    assert [[(t.label, t.ends_at - skills.timers.clock()) for t in e.timers] for e in shown] == [
        [], [("pasta timer", 300.0)], []]


def test_a_held_intent_acts_only_once_released_and_a_discarded_one_never(skills, matcher):
    """A speculative reply (the end of turn not yet confirmed) may match, but it must not set the
    timer: the user may still be saying 'Set a timer for ten minutes... no, twenty'."""
    from edgeagent.events import IntentMatched, ReplyDone
    from edgeagent.intents.replier import IntentReplier
    from edgeagent.llm.conversation import Conversation
    from edgeagent.turn.reply import ReplyPipeline

    async def main():
        replier = IntentReplier(ReplyPipeline(None, Conversation(""), skills.volume.speaker), matcher, skills,
                                load_config(None, env={}))
        discarded = replier.answer("Set a timer for ten minutes.", "t1", held=True)
        await asyncio.sleep(0.2)
        timers_while_held = list(skills.timers.timers)
        discarded.withdraw()
        dropped = [e async for e in discarded.events()]
        timers_after_discard = list(skills.timers.timers)
        kept = replier.answer("Set a timer for twenty minutes.", "t1", held=True)
        await asyncio.sleep(0.2)
        timers_before_release = list(skills.timers.timers)
        kept.release()
        played = [e async for e in kept.events()]
        return timers_while_held, dropped, timers_after_discard, timers_before_release, played

    while_held, dropped, after_discard, before_release, played = asyncio.run(main())
    assert while_held == [] and after_discard == [] and before_release == []
    assert not any(isinstance(e, IntentMatched) for e in dropped)
    assert isinstance(dropped[-1], ReplyDone) and dropped[-1].discarded
    assert [e.slots for e in played if isinstance(e, IntentMatched)] == [{"minutes": 20}]
    assert [t.duration_s for t in skills.timers.timers] == [1200.0]
