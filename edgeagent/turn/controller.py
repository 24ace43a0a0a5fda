"""The turn controller: one loop over microphone frames, one cancellation scope per turn.

    IDLE --wake--> LISTENING --end of turn--> THINKING --first audio--> SPEAKING --done--> IDLE
                       ^                                                  |
                       +------------------- barge-in ---------------------+

The frame loop never waits on a model: wake, VAD and barge-in run inline (each well under a
frame), STT is fed through its own worker thread, and the reply (LLM -> chunker -> TTS ->
speaker) runs as the turn's task.  Barge-in cancels that task, which closes the LLM stream,
stops synthesis and drops queued audio; the history keeps only what the user heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Protocol

from edgeagent.audio.frames import Frame
from edgeagent.config import Config
from edgeagent.events import (
    AgentState,
    BargeIn,
    NoSpeech,
    PlaybackFinished,
    SpeechEnded,
    SpeechStarted,
    StateChanged,
    TranscriptFinal,
    WakeDetected,
)
from edgeagent.turn.trace import TurnTrace, ms_between

log = logging.getLogger("edgeagent.turn.controller")

APOLOGY = "Sorry, something went wrong. Please try again."
STOP_DRAIN_S = 20.0  # how long a stopping daemon lets the turn in flight finish


class Transcriber(Protocol):
    """``edgeagent.stt.streaming.StreamingTranscriber``: feeding never blocks; the engine decodes
    speculatively in trailing silence on its own worker thread."""

    def feed(self, frame) -> None: ...

    async def finish(self) -> TranscriptFinal: ...

    async def reset(self) -> None: ...

    def settled_text(self) -> str | None: ...


class BargeInDetector(Protocol):
    def start(self) -> None: ...

    def process(self, mic: Frame) -> BargeIn | None: ...

    def stop(self) -> None: ...


class Responder(Protocol):
    """LLM -> chunker -> TTS -> speaker for one turn; fills the trace; cancellable."""

    async def respond(self, text: str, trace: TurnTrace, marks: "TurnMarks") -> PlaybackFinished: ...

    async def say(self, text: str, marks: "TurnMarks") -> PlaybackFinished: ...


@dataclass
class TurnMarks:
    """The controller's own monotonic timestamps of a turn (LLM and TTS stages time themselves)."""

    speech_end_true: float | None = None  # when the user actually stopped (audio position mapped to the clock)
    end_of_turn: float | None = None  # when the endpointer decided
    first_audio: float | None = None
    silenced: float | None = None


@dataclass
class Turn:
    trace: TurnTrace
    marks: TurnMarks = field(default_factory=TurnMarks)
    task: asyncio.Task | None = None
    transcript: str = ""
    follow_up: bool = False  # opened without a wake word
    announcement: bool = False  # remote `say`: spoken, not a conversation turn, no trace


class TurnController:
    def __init__(
        self,
        config: Config,
        *,
        wake,
        endpointer,
        transcriber: Transcriber,
        responder: Responder,
        barge_in: BargeInDetector | None = None,
        publish_trace: Callable[[TurnTrace], None] = lambda trace: None,
        on_state: Callable[[StateChanged], None] = lambda change: None,
        tick_speaker: Callable[[], object] | None = None,  # plays one frame on a mic-clocked (file) sink
        silence_speaker: Callable[[], None] = lambda: None,
    ):
        self.config = config
        self.wake = wake
        self.endpointer = endpointer
        self.transcriber = transcriber
        self.responder = responder
        self.barge_in = barge_in
        self.publish_trace = publish_trace
        self.on_state = on_state
        self.tick_speaker = tick_speaker
        self.silence_speaker = silence_speaker
        self.state = AgentState.IDLE
        self.turn: Turn | None = None
        self.finished: list[TurnTrace] = []
        self.muted = False
        self._follow_up_pending = False
        self._housekeeping: set[asyncio.Task] = set()
        self._stopping = False

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
        while (self.turn is not None or self._follow_up_pending) and time.monotonic() < deadline:
            await asyncio.sleep(step)
            index, audio_s = index + 1, audio_s + step
            self.on_frame(Frame(silence, index, audio_s, time.monotonic()))
        if self.turn is not None:  # stuck past the limit: cancel rather than hang shutdown
            self._abandon_turn("shutdown")
        if self._housekeeping:  # e.g. the STT reset of a closed follow-up window: done before stages close
            await asyncio.gather(*self._housekeeping, return_exceptions=True)

    def listen(self) -> None:
        """Open a turn without the wake word (remote `listen` command, follow-up window)."""
        if self.state == AgentState.IDLE:
            self._follow_up_pending = True  # opened on the next frame (the endpointer starts on a frame)

    def announce(self, text: str) -> bool:
        """Speak ``text`` now (remote `say`); False when a turn is in progress.  An open follow-up
        window in which nobody has spoken yet is not a turn in progress: the announcement closes it."""
        if self.turn is not None and self.turn.follow_up and self.turn.task is None \
                and not self.endpointer.state.in_speech:
            self.endpointer.end()
            self._finish_turn_no_speech(self.turn)
        if self.turn is not None or self.state != AgentState.IDLE:
            return False
        self._follow_up_pending = False  # the window would open on the next frame: the announcement replaces it
        turn = Turn(trace=TurnTrace(device_id=self.config.device.id), announcement=True)
        self.turn = turn
        self._set_state(AgentState.THINKING, "say")
        turn.task = asyncio.get_running_loop().create_task(self._announce(turn, text), name="announce")
        return True

    async def _announce(self, turn: Turn, text: str) -> None:
        try:
            await self.responder.say(text, turn.marks)
        finally:
            if self.turn is turn:
                self.turn = None
                self._set_state(AgentState.IDLE, "said")

    def cancel(self) -> None:
        """Stop whatever the agent is doing now and return to IDLE (remote `cancel`)."""
        if self.turn:
            self._abandon_turn("cancelled")

    # ------------------------------------------------------------ the frame loop

    def on_frame(self, frame: Frame) -> None:
        if self.tick_speaker:
            self.tick_speaker()
        detections = self.wake.process(frame)  # always fed, so its streaming features stay continuous
        if self.state == AgentState.IDLE:
            if self._follow_up_pending:
                self._follow_up_pending = False
                self._open_turn(None, follow_up=True, frame=frame)
            elif detections and not self.muted:
                self._open_turn(detections[0], frame=frame)
        if self.state == AgentState.LISTENING:
            self._listen_frame(frame)
            return
        self.endpointer.process(frame)  # not listening: only keeps its pre-roll buffer current
        if self.state in (AgentState.THINKING, AgentState.SPEAKING):  # talking over a reply, even before it starts
            self._watch_for_barge_in(frame, stop_word=bool(detections) and self.state == AgentState.SPEAKING)

    def _listen_frame(self, frame: Frame) -> None:
        turn = self.turn
        assert turn is not None
        events = self.endpointer.process(frame, settled_text=self.transcriber.settled_text)
        if self.endpointer.state.in_speech and not events:
            self.transcriber.feed(frame)
        for event in events:
            if isinstance(event, SpeechStarted):
                self.transcriber.feed(self.endpointer.preroll())  # the utterance starts with its pre-roll
            elif isinstance(event, SpeechEnded):
                lag = frame.audio_s + frame.duration_s - event.audio_s
                turn.marks.speech_end_true = event.t - max(0.0, lag)
                turn.marks.end_of_turn = event.t
                turn.trace.speech_ms = round(event.speech_ms, 1)
                turn.trace.end_of_turn_reason = event.reason
                self._set_state(AgentState.THINKING, event.reason)
                turn.task = asyncio.get_running_loop().create_task(self._reply(turn), name=f"turn-{turn.trace.turn_id[:8]}")
                return
            elif isinstance(event, NoSpeech):
                self._finish_turn_no_speech(turn)
                return

    def _watch_for_barge_in(self, frame: Frame, stop_word: bool) -> None:
        event = BargeIn(t=time.monotonic(), source="stop_word") if stop_word else None
        if event is None and self.barge_in is not None:
            event = self.barge_in.process(frame)
        if event is not None:
            self._barge_in(event, frame)

    # ------------------------------------------------------------ turn lifecycle

    def _open_turn(self, detection: WakeDetected | None, follow_up: bool = False, frame: Frame | None = None,
                   lookback_ms: int = 0) -> None:
        trace = TurnTrace(device_id=self.config.device.id)
        if detection is not None:
            trace.wake_word, trace.wake_score = detection.word, round(detection.score, 3)
        self.turn = Turn(trace=trace, follow_up=follow_up)
        if frame is not None:  # a follow-up window closes after follow_up_s without speech
            self.endpointer.begin(frame, lookback_ms, self.config.agent.follow_up_s if follow_up else None)
        self._set_state(AgentState.LISTENING, "wake" if detection else "follow-up")

    async def _reply(self, turn: Turn) -> None:
        marks, trace = turn.marks, turn.trace
        try:
            final = await self.transcriber.finish()
            trace.end_of_speech_to_final_ms = ms_between(marks.end_of_turn, final.t)
            turn.transcript = final.text.strip()
            trace.transcript = turn.transcript
            if not turn.transcript:
                trace.outcome = "no_speech"
                return
            await self.responder.respond(turn.transcript, trace, marks)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one turn's failure never stops the loop
            log.exception("turn %s failed", trace.turn_id[:8])
            trace.outcome, trace.error = "error", f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                await self.responder.say(APOLOGY, marks)
        finally:
            if self.turn is turn and not (turn.task and turn.task.cancelled()):
                self._complete(turn)

    def _complete(self, turn: Turn) -> None:
        """Normal end of a reply: publish, then open the follow-up window."""
        self._publish(turn)
        self.turn = None
        self._set_state(AgentState.IDLE, turn.trace.outcome)
        if turn.trace.outcome == "answered" and self.config.agent.follow_up_s > 0:
            self._follow_up_pending = True  # opened on the next frame (the endpointer starts on a frame)

    def _barge_in(self, event: BargeIn, frame: Frame) -> None:
        turn = self.turn
        assert turn is not None
        self.silence_speaker()
        turn.marks.silenced = time.monotonic()
        turn.trace.barge_in = True
        turn.trace.outcome = "barged_in"
        turn.trace.barge_in_stop_ms = ms_between(event.t, turn.marks.silenced)
        if turn.task:
            turn.task.cancel()  # the responder fills the trace as it unwinds; publish after that
            turn.task.add_done_callback(lambda _task: self._publish(turn))
        else:
            self._publish(turn)
        self.turn = None
        self._set_state(AgentState.IDLE, f"barge-in ({event.source})")
        # the user is already talking: listen now, including what they said while we detected it
        self._open_turn(None, follow_up=True, frame=frame,
                        lookback_ms=self.config.agent.barge_in_min_speech_ms + self.config.vad.preroll_ms)

    def _abandon_turn(self, reason: str) -> None:
        turn = self.turn
        assert turn is not None
        self.silence_speaker()
        if turn.task:
            turn.task.cancel()
        self._background(self.transcriber.reset())
        turn.trace.outcome, turn.trace.error = "error", reason
        self._publish(turn)
        self.turn = None
        self._set_state(AgentState.IDLE, reason)

    def _finish_turn_no_speech(self, turn: Turn) -> None:
        self._background(self.transcriber.reset())
        self.turn = None
        self._set_state(AgentState.IDLE, "no speech")
        if not turn.follow_up:  # an unanswered follow-up window is not a turn
            turn.trace.outcome = "no_speech"
            self._publish(turn)

    def _publish(self, turn: Turn) -> None:
        if turn.announcement:
            return
        m, trace = turn.marks, turn.trace
        trace.ttfa_ms = ms_between(m.speech_end_true, m.first_audio)
        trace.end_of_turn_ms = ms_between(m.speech_end_true, m.end_of_turn)
        trace.transcript = turn.transcript or trace.transcript
        self.finished.append(trace)
        self.publish_trace(trace)

    def _set_state(self, new: AgentState, reason: str) -> None:
        if new == self.state:
            return
        change = StateChanged(t=time.monotonic(), old=self.state, new=new, reason=reason)
        self.state = new
        self.wake.set_speaking(new == AgentState.SPEAKING)
        if self.barge_in is not None:
            replying = (AgentState.THINKING, AgentState.SPEAKING)
            if new in replying and change.old not in replying:
                self.barge_in.start()  # listening for an interruption from the end of the user's turn
            elif new not in replying and change.old in replying:
                self.barge_in.stop()
        log.debug("state %s -> %s (%s)", change.old.value, new.value, reason)
        self.on_state(change)

    def _background(self, coroutine) -> None:
        """Run housekeeping (an STT reset) without blocking the frame; keep a reference until done."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._housekeeping.add(task)
        task.add_done_callback(self._housekeeping.discard)

    def speaking_started(self) -> None:
        """The responder calls this when the first reply audio reaches the speaker."""
        if self.state == AgentState.THINKING:
            self._set_state(AgentState.SPEAKING, "first audio")
