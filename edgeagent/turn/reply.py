"""One reply: LLM tokens -> sentence chunks -> streaming TTS -> speaker, reported as events.

A ``Reply`` is the turn's cancellation scope for everything after the transcript: its task
runs the pipeline of async iterators, and ``cancel()`` (barge-in, a remote cancel) fades the
speaker out at once, then cancels the task, which closes the LLM stream (llama.cpp stops at the
next token, the HTTP stream is closed) and stops synthesis.  Whatever ended it, the reply then
reports what was heard and ends with exactly one ``ReplyDone`` or ``ReplyFailed``; the
conversation records only the part the user heard.  The controller folds the events into the
turn's trace; nothing here writes a trace.

A reply can be made *held* (a speculative reply, started while the user may still be talking):
the LLM answers and the first chunks are synthesized, but nothing plays until ``release()``.  A
held reply cancelled before its release is discarded: nothing was heard and the conversation
records nothing.  One speaker plays one reply at a time, so a reply starts only once the one
before it (say, a discarded speculation still unwinding) has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator, Awaitable, Callable, Protocol

from edgeagent.audio.playout import Speaker
from edgeagent.audio.sound import Sound
from edgeagent.events import ActionDone, Event, FirstToken, Heard, LlmRouted, ReplyDone, ReplyEvent, ReplyFailed
from edgeagent.llm.base import Tools
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.router import LlmRouter
from edgeagent.tts.chunker import SentenceChunker
from edgeagent.turn.trace import describe_error

Emit = Callable[[Event], None]


class Vet(Protocol):
    """One answer's check of what the LLM says (``edgeagent.intents.honesty.ClaimVet``)."""

    acted: bool  # a tool really did something in this answer: it may say so

    def __call__(self, chunk: str) -> str: ...


class ToolsFor(Protocol):
    """The device's skills as LLM tools, bound to one turn (``edgeagent.intents.tools.ToolBox``)."""

    def for_turn(self, turn_id: str, user_text: str) -> Tools: ...


class Reply:
    """A reply in flight: ``events()`` in order, ending with ReplyDone or ReplyFailed; ``cancel()``;
    ``release()`` lets a held reply play."""

    def __init__(self, produce: Callable[[Emit], Awaitable[None]], silence: Callable[[], None], name: str,
                 gate: asyncio.Event | None = None, after: Reply | None = None,
                 duck: Callable[[bool], None] = lambda ducked: None):
        self._queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()
        self._silence = silence
        self._gate = gate  # open: it may play (None: it always may)
        self._duck = duck
        self._task = asyncio.get_running_loop().create_task(self._run(produce, after), name=name)

    async def _run(self, produce: Callable[[Emit], Awaitable[None]], after: Reply | None) -> None:
        if after is not None and not after._task.done():
            try:
                await asyncio.wait([after._task])  # never cancels it: only waits for it to unwind
            except asyncio.CancelledError:  # cancelled before it began: still ends with what was heard
                unheard(self._queue.put_nowait, discarded=False)
                raise
        await produce(self._queue.put_nowait)

    @property
    def done(self) -> bool:
        return self._task.done()

    def release(self) -> None:
        """A held reply starts playing (at once if its first audio is ready)."""
        if self._gate is not None:
            self._gate.set()

    def withdraw(self) -> None:
        """Cancel a reply nobody has heard yet as if it had never been released: the user went on
        talking before its first audio, so the conversation records nothing of it."""
        if self._gate is not None:
            self._gate.clear()
        self.cancel()

    def duck(self, ducked: bool) -> None:
        """Quieter while someone may be talking over it (a barge-in onset), or full level again."""
        if not self._task.done():
            self._duck(ducked)

    def cancel(self) -> None:
        """Stop now: silent within a frame; the events still end with what was heard."""
        if not self._task.done():
            self._silence()
            self._task.cancel()

    async def events(self) -> AsyncIterator[ReplyEvent]:
        try:
            while True:
                event = await self._queue.get()
                yield event
                if isinstance(event, (ReplyDone, ReplyFailed)):
                    return
        finally:  # the consumer went away (its own task was cancelled): so does the reply
            self.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def unheard(emit: Emit, discarded: bool = True) -> None:
    """The events of a reply that ended before any of it played (``discarded``: it was held)."""
    now = time.monotonic()
    emit(Heard(t=now, text="", played_ms=0.0, cancelled=True))
    emit(ReplyDone(t=now, text="", tokens=0, cancelled=True, discarded=discarded))


class ReplyPipeline:
    """Makes replies: ``answer`` (through the LLM, into the conversation) and ``announce`` (fixed text)."""

    def __init__(self, router: LlmRouter, conversation: Conversation, speaker: Speaker,
                 vetting: Callable[[], Vet] | None = None, tools: ToolsFor | None = None):
        self.router = router
        self.conversation = conversation
        self.speaker = speaker
        self.vetting = vetting  # a fresh vet per answer: the LLM may not claim what no skill did
        self.tools = tools  # offered to backends that call functions (the cloud)
        self._last: Reply | None = None

    def answer(self, user_text: str, turn_id: str = "", *, held: bool = False) -> Reply:
        """The answer to ``user_text``; ``held``: made now, silent until ``release()`` (see above)."""
        tools = self.tools.for_turn(turn_id, user_text) if self.tools else None
        return self.reply(lambda emit, gate: self._answer(user_text, emit, gate, tools), "reply", held)

    def announce(self, text: str) -> Reply:
        """Speak fixed text (an apology, a remote ``say``) without the LLM or the conversation."""
        return self.reply(lambda emit, gate: self._announce(text, emit, gate), "announce")

    def reply(self, produce: Callable[[Emit, asyncio.Event], Awaitable[None]], name: str, held: bool = False) -> Reply:
        """A reply made by ``produce(emit, gate)``, which plays only once ``gate`` is open; it starts
        once the reply before it has unwound (one speaker)."""
        gate = asyncio.Event()
        if not held:
            gate.set()
        self._last = Reply(lambda emit: produce(emit, gate), self.speaker.cancel, name, gate=gate,
                           after=self._last, duck=self.speaker.duck)
        return self._last

    async def _answer(self, user_text: str, emit: Emit, gate: asyncio.Event, tools: Tools | None = None) -> None:
        generated: list[str] = []
        await self.play(self._chunks(self.conversation.messages_for(user_text), generated, emit, tools), emit,
                        made=lambda: ("".join(generated).strip(), len(generated)),
                        on_heard=lambda heard: self.conversation.record(user_text, heard.text, heard.cancelled),
                        gate=gate)

    async def _announce(self, text: str, emit: Emit, gate: asyncio.Event) -> None:
        await self.say(text, emit, gate=gate)

    async def say(self, text: str, emit: Emit, user_text: str | None = None, gate: asyncio.Event | None = None) -> None:
        """Speak fixed text as this reply (an announcement, a skill's answer; "" says nothing); with
        ``user_text`` the exchange joins the conversation, so the LLM knows what was done."""
        async def one() -> AsyncIterator[str]:
            if text:
                yield text

        record = (lambda heard: self.conversation.record(user_text, heard.text, heard.cancelled)) \
            if user_text is not None else (lambda heard: None)
        await self.play(one(), emit, made=lambda: (text, 0), on_heard=record, gate=gate)

    async def _chunks(self, messages, generated: list[str], emit: Emit, tools: Tools | None) -> AsyncIterator[str]:
        vet = self.vetting() if self.vetting else None
        async with contextlib.aclosing(self._llm_chunks(messages, generated, emit, tools, vet)) as chunks:
            async for chunk in chunks:  # closed at once on cancel, and the LLM stream with it
                yield vet(chunk) if vet is not None else chunk

    async def _llm_chunks(self, messages, generated: list[str], emit: Emit, tools: Tools | None,
                          vet: Vet | None) -> AsyncIterator[str]:
        chunker = SentenceChunker()
        async with contextlib.aclosing(self.router.stream(messages, tools)) as stream:  # closed at once on cancel
            async for event in stream:
                if isinstance(event, (LlmRouted, ActionDone)):
                    emit(event)
                    if isinstance(event, ActionDone) and event.done and vet is not None:
                        vet.acted = True
                    continue
                if not generated:
                    emit(FirstToken(t=event.t, backend=event.backend))
                generated.append(event.text)
                for chunk in chunker.push(event.text):
                    yield chunk
        for chunk in chunker.flush():
            yield chunk

    async def play(self, chunks: AsyncIterator[str | Sound], emit: Emit, made: Callable[[], tuple[str, int]],
                   on_heard: Callable[[Heard], None] = lambda heard: None, gate: asyncio.Event | None = None) -> None:
        """Speak ``chunks`` (text, or ready-made Sounds) once ``gate`` is open (None: at once); however
        that ends, report Heard and then ReplyDone or ReplyFailed.  ``made()`` is the text generated so
        far and its token count.  Cancelled before the gate opened, the reply was never the user's to
        hear: the conversation records nothing."""
        failure = None
        try:
            heard = await self.speaker.speak(chunks, emit, hold=gate)
        except asyncio.CancelledError:
            released = gate is None or gate.is_set()
            self._report(emit, self.speaker.heard(), made, on_heard if released else lambda heard: None,
                         cancelled=True, discarded=not released)
            raise
        except Exception as exc:  # reported, not raised: the controller decides what the user hears next
            heard, failure = self.speaker.heard(), describe_error(exc)
        self._report(emit, heard, made, on_heard, failure=failure)

    @staticmethod
    def _report(emit: Emit, heard: Heard, made: Callable[[], tuple[str, int]], on_heard: Callable[[Heard], None],
                cancelled: bool = False, failure: tuple[str, str | None] | None = None,
                discarded: bool = False) -> None:
        on_heard(heard)
        emit(heard)
        text, tokens = made()
        emit(ReplyFailed(t=heard.t, error=failure[0], detail=failure[1], text=text, tokens=tokens) if failure is not None
             else ReplyDone(t=heard.t, text=text, tokens=tokens, cancelled=cancelled, discarded=discarded))
