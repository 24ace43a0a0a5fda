"""The turn controller's state machine on its own, with scripted stages.

Each row scripts what the stages do on which frame (wake word, speech start and end, what STT
hears, how the reply goes, a barge-in, a remote cancel or a shutdown) and states the states the
controller must pass through and the trace it must publish: exactly one per turn, complete,
published after the turn unwound.  The reply side uses the real ``Reply`` scope; only what it
reports is scripted.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from edgeagent.audio.frames import Frame
from edgeagent.config import load_config
from edgeagent.ear.vad import EndpointState, after_wake_phrase, is_complete_sentence
from edgeagent.events import (AgentState, BargeIn, BargeInOnset, ChunkQueued, FirstAudio, FirstSynth, FirstToken, Heard, LlmRouted,
                              NoSpeech, ReplyDone, ReplyFailed, SpeechEnded, SpeechStarted, TranscriptFinal,
                              WakeDetected)
from edgeagent.turn.controller import APOLOGY, TurnController
from edgeagent.turn.reply import Reply

FRAME_S = 0.02  # audio per frame; frames are fed 4x faster than real time


@dataclass
class Script:
    wake_at: tuple[int, ...] = ()  # frames on which the wake word fires
    speech: tuple[int, int] | None = None  # (start frame, end frame) the endpointer reports
    no_speech_at: int | None = None
    heard: str = "what time is it"  # the final transcript ("" = nothing recognised)
    stt_fails: bool = False
    stt_s: float = 0.01  # how long the final transcript takes
    reply: str = "answer"  # answer | fail
    speak_s: float = 0.3  # how long the answer plays once it starts
    barge_in_at: int | None = None
    cancel_at: int | None = None  # remote cancel
    stop_at: int | None = None  # SIGTERM
    muted: bool = False
    frames: int = 80
    # what STT decoded of the pause so far: (from frame, to frame, text); outside these spans, nothing
    settled: tuple[tuple[int, int, str], ...] = ()


class ScriptedWake:
    def __init__(self, script: Script):
        self.script, self.speaking = script, False

    def process(self, frame: Frame) -> list[WakeDetected]:
        return [WakeDetected(t=frame.t, word="okay_nabu", score=0.9)] if frame.index in self.script.wake_at else []

    def set_speaking(self, speaking: bool) -> None:
        self.speaking = speaking

    def reset(self) -> None:
        pass

    def configure(self, wake) -> None:
        pass


class ScriptedEndpointer:
    def __init__(self, script: Script):
        self.script, self.active = script, False
        self.state = EndpointState(False, 0.0, 0.0, 0.0)

    def begin(self, frame, lookback_ms=0, no_speech_timeout_s=None) -> None:
        self.active = True
        self.no_speech_at = frame.index + round((no_speech_timeout_s or 1.0) / FRAME_S)

    def end(self) -> None:
        self.active = False

    def preroll(self) -> np.ndarray:
        return np.zeros(0, np.int16)

    def configure(self, vad) -> None:
        pass

    def process(self, frame: Frame, settled_text=None):
        if not self.active:
            return []
        start, end = self.script.speech or (-1, -1)
        if frame.index == start:
            self.state = EndpointState(True, 0.0, 0.0, 0.0)
            return [SpeechStarted(t=frame.t, audio_s=frame.audio_s)]
        if frame.index == end:
            self.active, self.state = False, EndpointState(False, 0.0, 0.0, 0.0)
            return [SpeechEnded(t=frame.t, audio_s=frame.audio_s, speech_ms=(end - start) * 20.0)]
        if frame.index == self.script.no_speech_at or (not self.state.in_speech and frame.index >= self.no_speech_at):
            self.active = False
            return [NoSpeech(t=frame.t)]
        return []


class ScriptedUtterance:
    def __init__(self, script: Script):
        self.script, self.cancelled, self.frame = script, False, -1
        self.decodes_pauses = True

    def audio(self, frame) -> None:
        self.frame = frame.index

    async def finish(self) -> TranscriptFinal:
        await asyncio.sleep(self.script.stt_s)
        if self.script.stt_fails:
            raise RuntimeError("decoder exploded")
        return TranscriptFinal(t=asyncio.get_running_loop().time(), text=self.script.heard)

    async def cancel(self) -> None:
        self.cancelled = True

    def settled_text(self):
        return next((text for start, end, text in self.script.settled if start <= self.frame < end), None)


class ScriptedTranscriber:
    def __init__(self, script: Script):
        self.script = script

    def start(self, preroll=None) -> ScriptedUtterance:
        return ScriptedUtterance(self.script)


class ScriptedReplier:
    """Replies in the real ``Reply`` scope; the events are what a real pipeline reports, in order."""

    def __init__(self, script: Script):
        self.script = script
        self.announced: list[str] = []
        self.answered: list[tuple[str, bool]] = []  # (text, held)
        self.heard: list[tuple[str, str]] = []  # (text answered, what of it was heard)

    def answer(self, user_text: str, turn_id: str = "", *, held: bool = False) -> Reply:
        self.answered.append((user_text, held))
        gate = asyncio.Event()
        if not held:
            gate.set()

        async def answer(emit):
            try:
                await self._answer(emit, gate)
            finally:
                heard = next((e for e in reversed(emitted) if isinstance(e, Heard)), None)
                self.heard.append((user_text, heard.text if heard else ""))

        emitted: list = []
        return Reply(lambda emit: answer(lambda e: (emitted.append(e), emit(e))), silence=lambda: None,
                     name="scripted", gate=gate)

    def announce(self, text: str) -> Reply:
        self.announced.append(text)
        return Reply(self._announce, silence=lambda: None, name="scripted-announce")

    async def _answer(self, emit, gate: asyncio.Event) -> None:
        now = asyncio.get_running_loop().time
        emit(LlmRouted(t=now(), backend="local", reason="scripted"))
        if self.script.reply == "fail":
            emit(Heard(t=now(), text="", played_ms=0.0, cancelled=False))
            emit(ReplyFailed(t=now(), error="LlmError: no LLM available"))
            return
        played = 0.0
        try:
            await asyncio.sleep(0.01)
            emit(FirstToken(t=now(), backend="local"))
            emit(ChunkQueued(t=now(), text="It is noon.", index=0))
            await asyncio.sleep(0.01)
            emit(FirstSynth(t=now()))
            await gate.wait()  # held: nothing plays before the release
            emit(FirstAudio(t=now()))
            started = now()
            try:
                await asyncio.sleep(self.script.speak_s)
            finally:
                played = (now() - started) * 1000
        except asyncio.CancelledError:
            if gate.is_set():
                emit(Heard(t=now(), text="It is", played_ms=played, cancelled=True))
                emit(ReplyDone(t=now(), text="It is noon.", tokens=4, cancelled=True))
            else:  # discarded before its release: nothing was heard
                emit(Heard(t=now(), text="", played_ms=0.0, cancelled=True))
                emit(ReplyDone(t=now(), text="It is noon.", tokens=4, cancelled=True, discarded=True))
            raise
        emit(Heard(t=now(), text="It is noon.", played_ms=played, cancelled=False))
        emit(ReplyDone(t=now(), text="It is noon.", tokens=4))

    async def _announce(self, emit) -> None:
        emit(FirstAudio(t=asyncio.get_running_loop().time()))
        await asyncio.sleep(0.05)
        emit(Heard(t=0.0, text=self.announced[-1], played_ms=50.0, cancelled=False))
        emit(ReplyDone(t=0.0, text=self.announced[-1], tokens=0))


class ScriptedBargeIn:
    def __init__(self, script: Script):
        self.script, self.started = script, 0

    def start(self) -> None:
        self.started += 1

    def process(self, frame: Frame):
        return BargeIn(t=frame.t, source="vad") if frame.index == self.script.barge_in_at else None


def run(script: Script, follow_up_s: float = 0.0, before=lambda controller: None, on_event=lambda event, turn: None,
        agent: dict | None = None, endpointer: type = ScriptedEndpointer):
    """Feed the script's frames; ``before(controller)`` runs on the loop first.  (controller, states, traces, replier)"""
    config = load_config(env={})
    config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, follow_up_s=follow_up_s, **(agent or {})))
    states, traces = [], []
    replier = ScriptedReplier(script)
    controller = TurnController(
        config, wake=ScriptedWake(script), endpointer=endpointer(script),
        transcriber=ScriptedTranscriber(script), replier=replier, barge_in=ScriptedBargeIn(script),
        publish_trace=traces.append, on_state=lambda change: states.append(change.new.value), on_event=on_event)
    controller.set_muted(script.muted)

    async def frames():
        loop = asyncio.get_running_loop()
        for index in range(script.frames):
            if index == script.cancel_at:
                controller.cancel()
            if index == script.stop_at:
                controller.stop()
            yield Frame(np.zeros(320, np.int16), index, index * FRAME_S, loop.time())
            await asyncio.sleep(FRAME_S / 4)

    async def main():
        before(controller)
        await controller.run(frames())

    asyncio.run(main())
    return controller, states, traces, replier


ANSWERED = ["listening", "thinking", "speaking", "idle"]


@dataclass
class Row:
    name: str
    script: Script
    states: list[str]
    outcomes: list[str]
    check: dict = field(default_factory=dict)  # trace fields of the first trace


ROWS = [
    Row("wake, speech, answer", Script(wake_at=(5,), speech=(10, 30)), ANSWERED, ["answered"],
        {"llm_backend": "local", "llm_tokens": 4, "reply": "It is noon.", "heard_reply": "It is noon.",
         "barge_in": False, "error": None}),
    Row("wake, then silence", Script(wake_at=(5,), no_speech_at=40), ["listening", "idle"], ["no_speech"],
        {"llm_backend": None}),
    Row("speech that STT heard as nothing", Script(wake_at=(5,), speech=(10, 30), heard=""),
        ["listening", "thinking", "idle"], ["no_speech"], {"llm_backend": None}),
    Row("muted: the wake word opens nothing", Script(wake_at=(5,), speech=(10, 30), muted=True), [], []),
    Row("barge-in while speaking", Script(wake_at=(5,), speech=(10, 30), speak_s=2.0, barge_in_at=45, frames=90),
        ["listening", "thinking", "speaking", "idle", "listening", "idle"], ["barged_in"],
        {"barge_in": True, "heard_reply": "It is", "reply": "It is noon.", "llm_backend": "local", "llm_tokens": 4}),
    Row("barge-in while thinking (STT still decoding)",
        Script(wake_at=(5,), speech=(10, 30), stt_s=1.0, barge_in_at=33, frames=90),
        ["listening", "thinking", "idle", "listening", "idle"], ["barged_in"],
        {"barge_in": True, "llm_backend": None}),
    Row("remote cancel while speaking", Script(wake_at=(5,), speech=(10, 30), speak_s=2.0, cancel_at=45, frames=90),
        ["listening", "thinking", "speaking", "idle"], ["error"],
        {"error": "cancelled", "llm_backend": "local", "reply": "It is noon.", "heard_reply": "It is"}),
    Row("remote cancel while listening", Script(wake_at=(5,), speech=(10, 60), cancel_at=20),
        ["listening", "idle"], ["error"], {"error": "cancelled", "llm_backend": None}),
    Row("the LLM fails: error, then an apology", Script(wake_at=(5,), speech=(10, 30), reply="fail"),
        ["listening", "thinking", "speaking", "idle"], ["error"],
        {"error": "LlmError: no LLM available", "llm_backend": "local"}),
    Row("STT fails: error, then an apology", Script(wake_at=(5,), speech=(10, 30), stt_fails=True),
        ["listening", "thinking", "speaking", "idle"], ["error"], {"error": "RuntimeError", "error_detail": "decoder exploded"}),
    Row("shutdown while speaking: the answer finishes", Script(wake_at=(5,), speech=(10, 30), speak_s=0.5, stop_at=40),
        ANSWERED, ["answered"], {"heard_reply": "It is noon."}),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_state_machine(row: Row):
    controller, states, traces, replier = run(row.script)
    assert states == row.states
    assert [t.outcome for t in traces] == row.outcomes
    assert len({t.turn_id for t in traces}) == len(traces)  # one trace per turn
    for name, value in row.check.items():
        assert getattr(traces[0], name) == value, name
    assert controller.state == AgentState.IDLE and controller.turn is None
    assert (APOLOGY in replier.announced) == (row.outcomes == ["error"] and "cancelled" not in (traces[0].error or ""))


def test_a_published_trace_is_complete_and_timed_from_one_clock():
    _, _, traces, _ = run(Script(wake_at=(5,), speech=(10, 30)))
    trace = traces[0]
    assert trace.wake_word == "okay_nabu" and trace.speech_ms == 400.0
    for name in ("end_of_speech_to_final_ms", "llm_ttft_ms", "chunk_wait_ms", "tts_first_chunk_ms", "ttfa_ms",
                 "end_of_turn_ms", "speak_ms"):
        assert getattr(trace, name) is not None and getattr(trace, name) >= 0, name
    assert trace.ttfa_ms >= trace.end_of_speech_to_final_ms


def test_an_answer_opens_the_follow_up_window_which_closes_without_a_trace_when_nobody_speaks():
    controller, states, traces, _ = run(Script(wake_at=(5,), speech=(10, 30), frames=120), follow_up_s=1.0)
    assert states == ANSWERED + ["listening", "idle"]
    assert [t.outcome for t in traces] == ["answered"]  # an unanswered follow-up window is no turn


def test_a_listen_asked_for_is_a_turn_even_when_nobody_speaks():
    """Remote `listen` and the kiosk's tap to speak are someone asking to talk, as a wake word is: an
    unanswered one is a no_speech turn (the fleet sees it), unlike the agent's own follow-up window."""
    _, states, traces, _ = run(Script(frames=60), before=lambda controller: controller.listen())
    assert states == ["listening", "idle"]
    assert [t.outcome for t in traces] == ["no_speech"] and traces[0].wake_word is None


def test_an_announcement_speaks_without_a_trace_and_is_refused_while_busy():
    accepted = []
    _, states, traces, replier = run(Script(frames=40), before=lambda controller: accepted.extend(
        [controller.announce("The timer is done."), controller.announce("Another one.")]))
    assert accepted == [True, False]  # one thing at a time
    assert states == ["thinking", "speaking", "idle"]
    assert traces == [] and replier.announced == ["The timer is done."]


def test_the_screen_sees_every_event_with_its_turn_even_a_reply_unwinding_after_a_barge_in():
    seen: list[tuple[str, str, str]] = []  # (event, turn id, new state for StateChanged)
    _, _, traces, _ = run(Script(wake_at=(5,), speech=(10, 30), speak_s=2.0, barge_in_at=45, frames=90),
                          on_event=lambda event, turn: seen.append((type(event).__name__, turn,
                                                                    getattr(getattr(event, "new", None), "value", ""))))
    barged = traces[0].turn_id
    mine = [kind for kind, turn, _ in seen if turn == barged]
    assert mine == ["WakeDetected", "StateChanged", "StateChanged", "TranscriptFinal", "LlmRouted", "FirstToken",
                    "ChunkQueued", "FirstSynth", "FirstAudio", "StateChanged", "BargeIn", "Heard", "ReplyDone"]
    follow_up = next(i for i, (kind, turn, new) in enumerate(seen) if new == "listening" and turn not in ("", barged))
    assert seen.index(("Heard", barged, "")) > follow_up  # reported after the next turn began, still as its own
    assert ("StateChanged", "", "idle") in seen  # idle belongs to no turn


# ------------------------------------------------------------ speculative replies


def test_a_reply_started_during_the_pause_plays_when_the_end_of_turn_confirms_it():
    script = Script(wake_at=(5,), speech=(10, 30), settled=((24, 99, "what time is it"),))
    _, states, traces, replier = run(script)
    assert states == ANSWERED and [t.outcome for t in traces] == ["answered"]
    trace = traces[0]
    assert replier.answered == [("what time is it", True)]  # one reply, started held, never a second one
    assert trace.speculative and trace.speculations_discarded == 0
    assert trace.reply_start_ms < trace.end_of_turn_ms  # the LLM was asked before the end of turn
    assert trace.heard_reply == "It is noon." and trace.ttfa_ms >= trace.end_of_turn_ms


def test_talking_on_discards_the_held_reply_unheard():
    """A pause, a speculation, more words: the held reply is dropped and the final one answered."""
    script = Script(wake_at=(5,), speech=(10, 40), heard="what time is it in london",
                    settled=((18, 22, "what time is it"), (34, 99, "what time is it in london")))
    _, states, traces, replier = run(script)
    assert states == ANSWERED and traces[0].outcome == "answered"
    assert replier.answered == [("what time is it", True), ("what time is it in london", True)]
    assert traces[0].speculative and traces[0].speculations_discarded == 1
    assert ("what time is it", "") in replier.heard  # nothing of the discarded one was heard
    assert traces[0].transcript == "what time is it in london" and traces[0].heard_reply == "It is noon."


def test_a_final_transcript_that_differs_discards_the_speculation_and_answers_it_afresh():
    script = Script(wake_at=(5,), speech=(10, 30), heard="what time is it in london",
                    settled=((24, 99, "what time is it"),))
    _, _, traces, replier = run(script)
    assert replier.answered == [("what time is it", True), ("what time is it in london", False)]
    assert not traces[0].speculative and traces[0].speculations_discarded == 1
    assert replier.heard[0] == ("what time is it", "")


@pytest.mark.parametrize("how", ["cancel", "barge_in"])
def test_a_turn_stopped_before_its_end_discards_the_speculation(how):
    """A remote cancel while listening, or an interruption while STT still decodes: nothing is heard."""
    if how == "cancel":
        script = Script(wake_at=(5,), speech=(10, 60), settled=((20, 99, "what time is it"),), cancel_at=30)
    else:
        script = Script(wake_at=(5,), speech=(10, 30), stt_s=1.0, barge_in_at=33, frames=90,
                        settled=((24, 99, "what time is it"),))
    controller, _, traces, replier = run(script)
    assert traces[0].speculations_discarded == 1 and not traces[0].speculative
    assert replier.heard == [("what time is it", "")]
    assert controller.turn is None and controller.state == AgentState.IDLE


def test_no_speculation_when_it_is_switched_off():
    config_off = {"speculative_reply": False}
    script = Script(wake_at=(5,), speech=(10, 30), settled=((24, 99, "what time is it"),))
    _, _, traces, replier = run(script, agent=config_off)
    assert replier.answered == [("what time is it", False)] and not traces[0].speculative


def test_talking_again_before_the_answer_is_heard_continues_the_same_turn():
    """The end of turn came in a pause mid-request; the user goes on before any audio of the answer:
    the answer is withdrawn unheard and the whole utterance is listened to again, in the same turn."""
    class GoesOn(ScriptedBargeIn):
        def process(self, frame: Frame):
            return BargeInOnset(t=frame.t) if frame.index == 31 else None

    class TwoUtterances(ScriptedEndpointer):
        def begin(self, frame, lookback_ms=0, no_speech_timeout_s=None) -> None:
            super().begin(frame, lookback_ms, no_speech_timeout_s)
            self.lookbacks = getattr(self, "lookbacks", []) + [lookback_ms]
            if lookback_ms:  # listening again: the rest of the request from frame 33 to 50 (STT shares the script)
                self.script.speech, self.script.heard = (33, 50), "set a timer for ten minutes"

    script = Script(wake_at=(5,), speech=(10, 30), heard="set a timer for", stt_s=0.2, frames=100)
    config = load_config(env={})
    config = dataclasses.replace(config, agent=dataclasses.replace(config.agent, follow_up_s=0.0))
    states, traces = [], []
    replier, endpointer = ScriptedReplier(script), TwoUtterances(script)
    controller = TurnController(
        config, wake=ScriptedWake(script), endpointer=endpointer, transcriber=ScriptedTranscriber(script),
        replier=replier, barge_in=GoesOn(script), publish_trace=traces.append,
        on_state=lambda change: states.append(change.new.value))

    async def frames():
        loop = asyncio.get_running_loop()
        for index in range(script.frames):
            yield Frame(np.zeros(320, np.int16), index, index * FRAME_S, loop.time())
            await asyncio.sleep(FRAME_S / 4)

    asyncio.run(controller.run(frames()))
    assert states == ["listening", "thinking", "idle", "listening", "thinking", "speaking", "idle"]
    assert [t.outcome for t in traces] == ["answered"]  # one turn, one trace
    assert traces[0].continued == 1 and traces[0].transcript == "set a timer for ten minutes"
    assert endpointer.lookbacks[-1] >= 21 * 20  # listening again reaches back to the utterance's start
    assert replier.heard[-1] == ("set a timer for ten minutes", "It is noon.")


def test_the_wake_phrase_alone_is_no_request_to_end_the_turn_on_or_answer():
    """'Okay Nabu.' ... (a pause) ... 'what time is it': what STT made of the pause is only the wake
    phrase, so the end of turn judges an empty request (open: keep listening) and nothing is answered
    speculatively; once the question is decoded, that is what the end of turn and the speculation see."""
    seen: list[str | None] = []

    class Judging(ScriptedEndpointer):
        def process(self, frame, settled_text=None):
            if settled_text is not None:
                seen.append(settled_text())
            return super().process(frame, settled_text)

    script = Script(wake_at=(5,), speech=(10, 40), settled=((12, 20, "Okay, Nabu."), (34, 99, "Okay Nabu, what time is it")),
                    heard="Okay Nabu, what time is it")
    _, _, traces, replier = run(script, endpointer=Judging)
    assert "Okay, Nabu." not in seen and "" in seen and "what time is it" in seen
    assert replier.answered == [("Okay Nabu, what time is it", True)]  # never an answer to the wake phrase
    assert traces[0].speculative and traces[0].speculations_discarded == 0


@pytest.mark.parametrize("text, word, left", [
    ("Alexa.", "alexa", ""), ("Okay, Nabu.", "okay_nabu", ""), ("Hey Jarvis!", "hey_jarvis", ""),
    ("Alexa, set a timer for", "alexa", "set a timer for"), ("Alexander the Great", "alexa", "Alexander the Great"),
    ("Okay Nabu, what time is it", "Okay Nabu", "what time is it"), ("What time is it?", None, "What time is it?")])
def test_after_wake_phrase(text, word, left):
    assert after_wake_phrase(text, word) == left
    assert not is_complete_sentence(after_wake_phrase(text, word)) or left
