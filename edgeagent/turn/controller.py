"""The turn controller: one loop over microphone frames, one cancellation scope per turn.

    IDLE --wake--> LISTENING --end of turn--> THINKING --first audio--> SPEAKING --done--> IDLE
                       ^                                                  |
                       +------------------- barge-in ---------------------+

The frame loop never waits on a model: wake, VAD and barge-in run inline (each well under a
frame), STT runs on its own worker thread, and the reply (LLM -> chunker -> TTS -> speaker)
runs as the turn's task and reports what happens as events.

While the user pauses, before the end of turn is decided, the reply to what STT already decoded
of the pause is started *held* (a speculative reply: the LLM answers, the first chunk is
synthesized, nothing plays).  When the end of turn is confirmed and the final transcript is the
same text, it is released and plays at once; when the user talks on or the transcript differs, it
is discarded unheard, and nothing of it reaches the conversation.  The end of turn itself is
tentative until the answer is heard: a user who goes on talking before its first audio (a pause
mid-request that the end-of-turn model took for the end) is listened to again, from the start of
the utterance, in the same turn.  The controller is the only
writer of a turn's trace: it folds those events in and publishes the trace once, after the
turn has unwound, whatever ended it (answered, barge-in, remote cancel, error, shutdown).
Whoever shows the conversation (the kiosk's screen) gets every event the controller sees, with
the id of the turn it belongs to (``on_event``): a reply still unwinding after a barge-in reports
into its own turn, not the one that replaced it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

from edgeagent.audio.frames import FRAME_RATE as SAMPLE_RATE, Frame
from edgeagent.config import Config
from edgeagent.ear.vad import Endpointer, after_wake_phrase
from edgeagent.ear.wake import WakeDetector
from edgeagent.events import (
    ActionDone,
    AgentState,
    BargeIn,
    BargeInCleared,
    BargeInOnset,
    ChunkQueued,
    Event,
    FirstAudio,
    FirstSynth,
    FirstToken,
    Heard,
    IntentMatched,
    LlmRouted,
    NoSpeech,
    ReplyDone,
    ReplyEvent,
    ReplyFailed,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    TranscriptFinal,
    WakeDetected,
)
from edgeagent.turn.trace import TurnTrace, describe_error, ms_between

log = logging.getLogger("edgeagent.turn")

APOLOGY = "Sorry, something went wrong. Please try again."
STOP_DRAIN_S = 20.0  # how long a stopping daemon lets the turn in flight finish


class Utterance(Protocol):
    """One utterance being transcribed (``edgeagent.stt.streaming.Utterance``)."""

    def audio(self, frame: Frame) -> None: ...

    async def finish(self) -> TranscriptFinal: ...

    async def cancel(self) -> None: ...

    def settled_text(self) -> str | None: ...

    @property
    def decodes_pauses(self) -> bool: ...


class Transcriber(Protocol):
    def start(self, preroll) -> Utterance: ...


class Reply(Protocol):
    """A reply in flight (``edgeagent.turn.reply.Reply``)."""

    def events(self) -> AsyncIterator[ReplyEvent]: ...

    def cancel(self) -> None: ...

    def release(self) -> None: ...

    def duck(self, ducked: bool) -> None: ...


class Replier(Protocol):
    def answer(self, user_text: str, turn_id: str = "", *, held: bool = False) -> Reply: ...

    def announce(self, text: str) -> Reply: ...


class Interruptions(Protocol):
    """``edgeagent.ear.bargein.BargeInDetector``: fed every frame while the agent replies."""

    def start(self) -> None: ...

    def process(self, frame: Frame) -> BargeIn | BargeInOnset | BargeInCleared | None: ...


@dataclass(frozen=True)
class Speculation:
    """A held reply to ``text``, the transcript of the pause so far."""

    text: str
    reply: Reply


@dataclass
class Turn:
    trace: TurnTrace
    follow_up: bool = False  # the agent's own listening window (after a reply, a barge-in): unanswered, no turn
    announcement: bool = False  # remote `say`: spoken, not a conversation turn, no trace
    task: asyncio.Task | None = None
    utterance: Utterance | None = None
    reply: Reply | None = None
    speculation: Speculation | None = None
    transcript: str = ""
    stopped: bool = False  # cancelled on purpose (barge-in, remote cancel): the trace already says why
    continued: bool = False  # the user went on talking before the answer was heard: listened to again
    speech_start: float | None = None  # audio position where the utterance (with its pre-roll) began
    wake_phrase: str = ""  # what woke it ("Alexa"): said alone, it is no request yet
    # the controller's own monotonic readings, from which the trace's durations are computed
    speech_end_true: float | None = None  # when the user actually stopped (audio position mapped to the clock)
    end_of_turn: float | None = None  # when the endpointer decided
    final: float | None = None  # when the final transcript was there
    llm_request: float | None = None
    first_token: float | None = None
    first_chunk: float | None = None
    first_audio: float | None = None
    onset: float | None = None  # a barge-in onset ducked the reply (until it is cleared)


class TurnController:
    def __init__(
        self,
        config: Config,
        *,
        wake: WakeDetector,
        endpointer: Endpointer,
        transcriber: Transcriber,
        replier: Replier,
        barge_in: Interruptions,
        publish_trace: Callable[[TurnTrace], None] = lambda trace: None,
        on_state: Callable[[StateChanged], None] = lambda change: None,
        tick_speaker: Callable[[], object] | None = None,  # plays one frame on a mic-clocked (file) output
        on_event: Callable[[Event, str], None] = lambda event, turn_id: None,  # every event, with its turn's id
        clean: Callable[[Frame], Frame] = lambda frame: frame,  # what the endpointer and STT hear (ear/clean.py)
    ):
        self.config = config
        self.wake = wake
        self.endpointer = endpointer
        self.transcriber = transcriber
        self.replier = replier
        self.barge_in = barge_in
        self.publish_trace = publish_trace
        self.on_state = on_state
        self.tick_speaker = tick_speaker
        self.on_event = on_event
        self.clean = clean
        self.state = AgentState.IDLE
        self.turn: Turn | None = None
        self.finished: list[TurnTrace] = []
        self.muted = False
        # a turn to open on the next frame (the endpointer starts on a frame): "listen" (asked for) or "follow-up"
        self._pending_open: str | None = None
        self._turns: set[asyncio.Task] = set()  # turns still unwinding (a barged-in reply) and housekeeping
        self._stopping = False

    def configure(self, config: Config) -> None:
        """Live config: the follow-up window and the barge-in look-back are read per turn."""
        self.config = config

    def set_muted(self, muted: bool) -> None:
        """Muted: the wake word opens no turn (remote ``mute``)."""
        self.muted = muted

    def observe(self, event: Event) -> None:
        """An event from a stage outside the turn's own flow (a partial transcript, the timers skill):
        passed on with the current turn's id."""
        self.on_event(event, self.turn.trace.turn_id if self.turn else "")

    # ------------------------------------------------------------ public control

    async def run(self, frames: AsyncIterator[Frame], pace_replies: bool = False) -> None:
        """Process frames until the source ends or ``stop()``, then let the turn in flight finish.

        ``pace_replies`` is for file input read as fast as possible: while a reply is in flight
        the frames are paced in real time, so the reply lands where it would in a live
        conversation, and silence elsewhere is skipped through quickly.
        """
        anchor: tuple[float, float] | None = None  # (monotonic, audio_s) where pacing started
        last: Frame | None = None
        self.wake.reset()  # a new stream starts a new audio clock: no refractory carried over
        async for frame in frames:
            last = frame
            if pace_replies and self.turn is not None and self.turn.task is not None:
                anchor = anchor or (time.monotonic(), frame.audio_s)
                delay = anchor[0] + (frame.audio_s - anchor[1]) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame = Frame(frame.samples, frame.index, frame.audio_s, time.monotonic())
            else:
                anchor = None
            self.on_frame(frame)
            if self._stopping:
                break
            await asyncio.sleep(0)  # let the turn task, STT results and timers run between frames
        if last is not None:  # SIGTERM: finish the turn well inside systemd's TimeoutStopSec=30
            await self.drain(last, limit_s=STOP_DRAIN_S if self._stopping else 60.0)

    def stop(self) -> None:
        """Stop taking frames (SIGTERM); the turn in flight is finished by ``drain``."""
        self._stopping = True

    async def drain(self, last: Frame, limit_s: float = 60.0) -> None:
        """After the input ends: keep the clock running with silent frames, in real time, until
        the turn in flight and any follow-up window are over, so the reply is heard in full."""
        step = last.duration_s
        silence = last.samples * 0
        index, audio_s = last.index, last.audio_s
        deadline = time.monotonic() + limit_s
        while (self.turn is not None or self._pending_open) and time.monotonic() < deadline:
            await asyncio.sleep(step)
            index, audio_s = index + 1, audio_s + step
            self.on_frame(Frame(silence, index, audio_s, time.monotonic()))
        if self.turn is not None:  # stuck past the limit: cancel rather than hang shutdown
            self._abandon_turn("shutdown")
        if self._turns:  # barged-in replies still unwinding, STT resets: done before the stages close
            await asyncio.gather(*self._turns, return_exceptions=True)

    def listen(self) -> None:
        """Open a turn without the wake word (remote `listen`, the kiosk's tap to speak): asked for by
        someone, so it is a turn like one the wake word opens (nobody speaking is ``no_speech``), not
        the agent's own follow-up window."""
        if self.state == AgentState.IDLE:
            self._pending_open = "listen"

    def announce(self, text: str, reply: Callable[[], Reply] | None = None) -> bool:
        """Speak ``text`` now (remote `say`, a timer ringing: ``reply`` makes its own Reply); False when
        a turn is in progress.  An open follow-up window in which nobody has spoken yet is not a turn
        in progress: the announcement closes it.  A barge-in stops it like any reply."""
        turn = self.turn
        if turn is not None and turn.follow_up and turn.task is None and not self.endpointer.state.in_speech:
            self.endpointer.end()
            self._close_listening(turn)
        if self.turn is not None or self.state != AgentState.IDLE:
            return False
        if self._pending_open == "follow-up":  # the window would open on the next frame: the announcement replaces it
            self._pending_open = None
        turn = Turn(trace=TurnTrace(device_id=self.config.device.id), announcement=True)
        self.turn = turn
        self._set_state(AgentState.THINKING, "say")
        self._start(turn, self._announce(turn, reply() if reply else self.replier.announce(text)), "announce")
        return True

    def cancel(self) -> None:
        """Stop whatever the agent is doing now and return to IDLE (remote `cancel`)."""
        if self.turn:
            self._abandon_turn("cancelled")

    # ------------------------------------------------------------ the frame loop

    def on_frame(self, frame: Frame) -> None:
        if self.tick_speaker:
            self.tick_speaker()
        heard = self.clean(frame)  # the endpointer and STT hear it cleaned; the wake word hears the microphone
        if self.state in (AgentState.THINKING, AgentState.SPEAKING):  # talking over a reply, even before it starts
            self.endpointer.process(heard)  # keeps the pre-roll current: a barge-in listens from before it fired
            interruption = self.barge_in.process(frame)  # echo-cancelled: the wake detector and the VAD hear the user
            if isinstance(interruption, BargeInOnset) and self._may_continue():
                self._continue(frame)
            elif isinstance(interruption, BargeIn):
                self._barge_in(interruption, frame)
            elif interruption is not None:
                self._duck(interruption)
            return
        detections = self.wake.process(frame)  # always fed, so its streaming features stay continuous
        if self.state == AgentState.IDLE:
            if self._pending_open:
                kind, self._pending_open = self._pending_open, None
                self._open_turn(None, follow_up=kind == "follow-up", frame=frame)
            elif detections and not self.muted:
                self._open_turn(detections[0], frame=frame)
        if self.state == AgentState.LISTENING:
            self._listen_frame(heard)
        else:
            self.endpointer.process(heard)  # not listening: only keeps its pre-roll buffer current

    def _listen_frame(self, frame: Frame) -> None:
        turn = self.turn
        assert turn is not None
        utterance = turn.utterance
        decodes_pauses = utterance is not None and utterance.decodes_pauses
        settled = (lambda: self._request_in_pause(turn)) if decodes_pauses else None
        events = self.endpointer.process(frame, settled_text=settled)
        if utterance is not None and self.endpointer.state.in_speech and not events:
            utterance.audio(frame)
        for event in events:
            if isinstance(event, SpeechStarted):
                turn.utterance = self.transcriber.start(self.endpointer.preroll())  # it starts with its pre-roll
                turn.speech_start = event.audio_s - len(self.endpointer.preroll()) / SAMPLE_RATE
            elif isinstance(event, SpeechEnded):
                lag = frame.audio_s + frame.duration_s - event.audio_s
                turn.speech_end_true = event.t - max(0.0, lag)
                turn.end_of_turn = event.t
                turn.trace.speech_ms = round(event.speech_ms, 1)
                turn.trace.end_of_turn_reason = event.reason
                self._set_state(AgentState.THINKING, event.reason)
                self._start(turn, self._run_turn(turn), f"turn-{turn.trace.turn_id[:8]}")
                return
            elif isinstance(event, NoSpeech):
                self._close_listening(turn)
                return
        if decodes_pauses and self.config.agent.speculative_reply:
            self._speculate(turn, utterance.settled_text() if self._request_in_pause(turn) else None)

    @staticmethod
    def _request_in_pause(turn: Turn) -> str | None:
        """What STT made of the pause, after the wake phrase: the end of turn and the speculation judge
        the request ("Alexa." alone is none yet); None while nothing is decoded."""
        text = turn.utterance.settled_text() if turn.utterance is not None else None
        return None if text is None else after_wake_phrase(text, turn.wake_phrase)

    def _speculate(self, turn: Turn, settled: str | None) -> None:
        """Keep one held reply to what STT decoded of the pause: started once it is there, discarded
        when the user talks on (no settled text any more) or it changed."""
        text = (settled or "").strip()
        if turn.speculation is not None and turn.speculation.text != text:
            self._discard(turn)
        if turn.speculation is None and text:
            turn.speculation = Speculation(text, self.replier.answer(text, turn_id=turn.trace.turn_id, held=True))

    def _discard(self, turn: Turn) -> None:
        """Drop the held reply unheard; it unwinds in the background (the next reply waits for it)."""
        speculation, turn.speculation = turn.speculation, None
        if speculation is None:
            return
        turn.trace.speculations_discarded += 1
        speculation.reply.cancel()
        self._keep(asyncio.get_running_loop().create_task(self._drain(speculation.reply)))

    @staticmethod
    async def _drain(reply: Reply) -> None:
        async for _event in reply.events():
            pass

    # ------------------------------------------------------------ turn lifecycle

    def _open_turn(self, detection: WakeDetected | None, follow_up: bool = False, frame: Frame | None = None,
                   lookback_ms: int = 0, trace: TurnTrace | None = None, wake_phrase: str = "") -> None:
        trace = trace or TurnTrace(device_id=self.config.device.id)
        if detection is not None:
            trace.wake_word, trace.wake_score = detection.word, round(detection.score, 3)
            wake_phrase = detection.phrase or detection.word
        self.turn = Turn(trace=trace, follow_up=follow_up, wake_phrase=wake_phrase)
        if detection is not None:
            self.on_event(detection, trace.turn_id)
        if frame is not None:  # a follow-up window closes after follow_up_s without speech
            self.endpointer.begin(frame, lookback_ms, self.config.agent.follow_up_s if follow_up else None)
        self._set_state(AgentState.LISTENING, "wake" if detection else "follow-up" if follow_up else "listen")

    def _start(self, turn: Turn, coroutine, name: str) -> None:
        turn.task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._keep(turn.task)

    async def _run_turn(self, turn: Turn) -> None:
        """Transcript, reply, and whatever ended it: the trace is published once, after all of it unwound."""
        trace = turn.trace
        try:
            try:
                await self._answer(turn)
            except Exception as exc:  # one turn's failure never stops the loop
                log.exception("turn %s failed", trace.turn_id[:8])
                trace.outcome = "error"
                trace.error, trace.error_detail = describe_error(exc)
            if trace.outcome == "error" and not turn.stopped:  # it failed: say so rather than go quiet
                await self._speak(turn, self.replier.announce(APOLOGY))
        except asyncio.CancelledError:
            if not turn.stopped:  # cancelled by nobody who said why: the daemon is shutting down
                trace.outcome, trace.error = "error", "shutdown"
            raise
        finally:
            self._discard(turn)  # stopped before the end of turn adopted it
            self._end(turn)

    async def _answer(self, turn: Turn) -> None:
        trace = turn.trace
        final = await turn.utterance.finish() if turn.utterance else None
        if final is not None:
            self.on_event(final, trace.turn_id)
        turn.final = final.t if final else None
        trace.end_of_speech_to_final_ms = ms_between(turn.end_of_turn, turn.final)
        turn.transcript = trace.transcript = final.text.strip() if final else ""
        speculation = turn.speculation
        if speculation is not None and speculation.text == turn.transcript:  # confirmed: play what is ready
            turn.speculation, turn.reply, trace.speculative = None, speculation.reply, True
            speculation.reply.release()
        else:
            self._discard(turn)
            if not turn.transcript:
                trace.outcome = "no_speech"
                return
            turn.reply = self.replier.answer(turn.transcript, turn_id=trace.turn_id)
        async for event in turn.reply.events():
            self.on_event(event, trace.turn_id)
            self._fold(turn, event)

    async def _announce(self, turn: Turn, reply: Reply) -> None:
        try:
            await self._speak(turn, reply)
        finally:
            self._end(turn)

    async def _speak(self, turn: Turn, reply: Reply) -> None:
        """Play a reply that is not the answer (an apology, an announcement): only its audio counts."""
        turn.reply = reply
        async for event in reply.events():
            self.on_event(event, turn.trace.turn_id)
            if isinstance(event, FirstAudio):
                self._first_audio(turn, event)

    def _fold(self, turn: Turn, event: ReplyEvent) -> None:
        """One reply event into the turn's trace."""
        trace = turn.trace
        if isinstance(event, IntentMatched):
            trace.intent, trace.intent_slots, trace.intent_confidence = event.name, event.slots, event.confidence
            trace.intent_match_ms = event.match_ms
            trace.llm_backend, trace.llm_backend_reason = "none", f"intent ({event.source})"
        elif isinstance(event, ActionDone):
            trace.actions = (trace.actions or []) + [{"name": event.name, "done": event.done,
                                                      "confirmed": event.confirmed, "detail": event.detail}]
        elif isinstance(event, LlmRouted):
            turn.llm_request = turn.llm_request or event.t
            trace.llm_backend, trace.llm_backend_reason = event.backend, event.reason  # a failover overrides
            if event.detail:
                trace.error_detail = event.detail
        elif isinstance(event, FirstToken):
            turn.first_token = event.t
            trace.llm_ttft_ms = ms_between(turn.llm_request, event.t)
        elif isinstance(event, ChunkQueued):
            if turn.first_chunk is None:
                turn.first_chunk = event.t
                trace.chunk_wait_ms = ms_between(turn.first_token, event.t)
        elif isinstance(event, FirstSynth):
            trace.tts_first_chunk_ms = ms_between(turn.first_chunk, event.t)
        elif isinstance(event, FirstAudio):
            self._first_audio(turn, event)
        elif isinstance(event, Heard):
            trace.speak_ms, trace.heard_reply = event.played_ms, event.text
        elif isinstance(event, ReplyDone):
            trace.reply, trace.llm_tokens = event.text, event.tokens
        elif isinstance(event, ReplyFailed):
            trace.reply, trace.llm_tokens = event.text, event.tokens
            trace.outcome, trace.error, trace.error_detail = "error", event.error, event.detail or trace.error_detail

    def _first_audio(self, turn: Turn, event: FirstAudio) -> None:
        turn.first_audio = turn.first_audio or event.t
        if self.turn is turn and self.state == AgentState.THINKING:
            self._set_state(AgentState.SPEAKING, "first audio")

    def _end(self, turn: Turn) -> None:
        """The turn has unwound: publish its trace; if it is still the current one, back to IDLE
        (and, after an answer, open the follow-up window).  A turn the user went on with is not over:
        its trace goes on with the listening that replaced it."""
        if turn.continued:
            return
        self._publish(turn)
        if self.turn is not turn:  # barged in or abandoned: the controller has moved on already
            return
        self.turn = None
        self._set_state(AgentState.IDLE, "said" if turn.announcement else turn.trace.outcome)
        if turn.trace.outcome == "answered" and not turn.announcement and self.config.agent.follow_up_s > 0:
            self._pending_open = "follow-up"

    def _duck(self, event: BargeInOnset | BargeInCleared) -> None:
        """Someone may be talking over the reply: quieter at once; full level again if it was not speech."""
        turn = self.turn
        assert turn is not None
        onset = isinstance(event, BargeInOnset)
        turn.onset = event.t if onset else None
        turn.trace.barge_in_resumed += 0 if onset else 1
        if turn.reply is not None:
            turn.reply.duck(onset)

    def _barge_in(self, event: BargeIn, frame: Frame) -> None:
        turn = self.turn
        assert turn is not None
        self.on_event(event, turn.trace.turn_id)
        self._stop(turn)
        trace = turn.trace
        trace.barge_in, trace.outcome = True, "barged_in"
        trace.barge_in_stop_ms = ms_between(turn.onset or event.t, time.monotonic())
        self.turn = None
        self._set_state(AgentState.IDLE, f"barge-in ({event.source})")
        # the user is already talking: listen now, including what they said while we detected it
        self._open_turn(None, follow_up=True, frame=frame,
                        lookback_ms=int(event.speech_ms) + self.config.vad.preroll_ms)

    def _may_continue(self) -> bool:
        """The user talks again after the end of turn, and nothing of the answer was heard yet."""
        turn = self.turn
        return (turn is not None and not turn.announcement and turn.speech_start is not None
                and turn.first_audio is None and self.state == AgentState.THINKING)

    def _continue(self, frame: Frame) -> None:
        """The end of turn came too soon: withdraw the answer (unheard, unrecorded) and listen again to
        the whole utterance, from its start, in the same turn (same id and trace)."""
        turn = self.turn
        assert turn is not None and turn.speech_start is not None
        turn.continued = turn.stopped = True
        self._discard(turn)
        old = turn.trace
        if turn.reply is not None:
            turn.reply.withdraw()
        elif turn.task is not None:
            turn.task.cancel()
        lookback_ms = int(1000 * (frame.audio_s + frame.duration_s - turn.speech_start))
        trace = TurnTrace(device_id=old.device_id, turn_id=old.turn_id, started_at=old.started_at,
                          wake_word=old.wake_word, wake_score=old.wake_score, continued=old.continued + 1,
                          speculations_discarded=old.speculations_discarded + (turn.reply is not None))
        self.turn = None
        self._set_state(AgentState.IDLE, "the user goes on")
        self._open_turn(None, follow_up=turn.follow_up, frame=frame, lookback_ms=lookback_ms, trace=trace,
                        wake_phrase=turn.wake_phrase)

    def _abandon_turn(self, reason: str) -> None:
        """Remote cancel or shutdown: stop the turn now, publish once it has unwound."""
        turn = self.turn
        assert turn is not None
        if turn.task is None:  # still listening: nothing to unwind
            self.endpointer.end()
            if not turn.follow_up or turn.utterance is not None:  # an empty follow-up window is no turn
                turn.trace.outcome, turn.trace.error = "error", reason
            self._close_listening(turn)
            return
        turn.trace.outcome, turn.trace.error = "error", reason
        self.turn = None
        self._set_state(AgentState.IDLE, reason)
        self._stop(turn)

    def _stop(self, turn: Turn) -> None:
        """Silence and cancel what the turn is doing: its reply (which fades out within a frame and
        reports what was heard) or, before a reply exists, its task."""
        turn.stopped = True
        if turn.reply is not None:
            turn.reply.cancel()
        elif turn.task is not None:
            turn.task.cancel()

    def _close_listening(self, turn: Turn) -> None:
        """Nobody spoke, or the listening turn was closed from outside (its trace then says why): back
        to IDLE.  A wake word without speech is a turn (``no_speech``); an unanswered follow-up window is not."""
        self._discard(turn)
        if turn.utterance is not None:
            self._keep(asyncio.get_running_loop().create_task(turn.utterance.cancel()))
        self.turn = None
        self._set_state(AgentState.IDLE, turn.trace.error or "no speech")
        if turn.trace.outcome != "error":
            if turn.follow_up:
                return
            turn.trace.outcome = "no_speech"
        self._publish(turn)

    def _publish(self, turn: Turn) -> None:
        if turn.announcement:
            return
        trace = turn.trace
        trace.ttfa_ms = ms_between(turn.speech_end_true, turn.first_audio)
        trace.end_of_turn_ms = ms_between(turn.speech_end_true, turn.end_of_turn)
        trace.reply_start_ms = ms_between(turn.speech_end_true, turn.llm_request)
        trace.transcript = turn.transcript or trace.transcript
        self.finished.append(trace)
        self.publish_trace(trace)

    def _set_state(self, new: AgentState, reason: str) -> None:
        if new == self.state:
            return
        change = StateChanged(t=time.monotonic(), old=self.state, new=new, reason=reason)
        self.state = new
        self.wake.set_speaking(new == AgentState.SPEAKING)
        replying = (AgentState.THINKING, AgentState.SPEAKING)
        if new in replying and change.old not in replying:
            self.barge_in.start()  # listening for an interruption from the end of the user's turn
        log.debug("state %s -> %s (%s)", change.old.value, new.value, reason)
        self.on_state(change)
        self.on_event(change, self.turn.trace.turn_id if self.turn else "")

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a reference until it is done (turns unwinding after a barge-in, STT housekeeping)."""
        self._turns.add(task)
        task.add_done_callback(self._turns.discard)
