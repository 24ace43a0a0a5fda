"""One reply: LLM tokens -> sentence chunks -> streaming TTS -> speaker, reported as events.

A ``Reply`` is the turn's cancellation scope for everything after the transcript: its task
runs the pipeline of async iterators, and ``cancel()`` (barge-in, a remote cancel) fades the
speaker out at once, then cancels the task, which closes the LLM stream (llama.cpp stops at the
next token, the HTTP stream is closed) and stops synthesis.  Whatever ended it, the reply then
reports what was heard and ends with exactly one ``ReplyDone`` or ``ReplyFailed``; the
conversation records only the part the user heard.  The controller folds the events into the
turn's trace; nothing here writes a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    """A reply in flight: ``events()`` in order, ending with ReplyDone or ReplyFailed; ``cancel()``."""

    def __init__(self, produce: Callable[[Emit], Awaitable[None]], silence: Callable[[], None], name: str):
        self._queue: asyncio.Queue[ReplyEvent] = asyncio.Queue()
        self._silence = silence
        self._task = asyncio.get_running_loop().create_task(produce(self._queue.put_nowait), name=name)

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


class ReplyPipeline:
    """Makes replies: ``answer`` (through the LLM, into the conversation) and ``announce`` (fixed text)."""

    def __init__(self, router: LlmRouter, conversation: Conversation, speaker: Speaker,
                 vetting: Callable[[], Vet] | None = None, tools: ToolsFor | None = None):
        self.router = router
        self.conversation = conversation
        self.speaker = speaker
        self.vetting = vetting  # a fresh vet per answer: the LLM may not claim what no skill did
        self.tools = tools  # offered to backends that call functions (the cloud)

    def answer(self, user_text: str, turn_id: str = "") -> Reply:
        tools = self.tools.for_turn(turn_id, user_text) if self.tools else None
        return Reply(lambda emit: self._answer(user_text, emit, tools), self.speaker.cancel, "reply")

    def announce(self, text: str) -> Reply:
        """Speak fixed text (an apology, a remote ``say``) without the LLM or the conversation."""
        return Reply(lambda emit: self._announce(text, emit), self.speaker.cancel, "announce")

    async def _answer(self, user_text: str, emit: Emit, tools: Tools | None = None) -> None:
        generated: list[str] = []
        await self.play(self._chunks(self.conversation.messages_for(user_text), generated, emit, tools), emit,
                        made=lambda: ("".join(generated).strip(), len(generated)),
                        on_heard=lambda heard: self.conversation.record(user_text, heard.text, heard.cancelled))

    async def _announce(self, text: str, emit: Emit) -> None:
        await self.say(text, emit)

    async def say(self, text: str, emit: Emit, user_text: str | None = None) -> None:
        """Speak fixed text as this reply (an announcement, a skill's answer; "" says nothing); with
        ``user_text`` the exchange joins the conversation, so the LLM knows what was done."""
        async def one() -> AsyncIterator[str]:
            if text:
                yield text

        record = (lambda heard: self.conversation.record(user_text, heard.text, heard.cancelled)) \
            if user_text is not None else (lambda heard: None)
        await self.play(one(), emit, made=lambda: (text, 0), on_heard=record)

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
                    on_heard: Callable[[Heard], None] = lambda heard: None) -> None:
        """Speak ``chunks`` (text, or ready-made Sounds); however that ends, report Heard and then ReplyDone or ReplyFailed.
        ``made()`` is the text generated so far and its token count."""
        failure = None
        try:
            heard = await self.speaker.speak(chunks, emit)
        except asyncio.CancelledError:
            self._report(emit, self.speaker.heard(), made, on_heard, cancelled=True)
            raise
        except Exception as exc:  # reported, not raised: the controller decides what the user hears next
            heard, failure = self.speaker.heard(), describe_error(exc)
        self._report(emit, heard, made, on_heard, failure=failure)

    @staticmethod
    def _report(emit: Emit, heard: Heard, made: Callable[[], tuple[str, int]], on_heard: Callable[[Heard], None],
                cancelled: bool = False, failure: tuple[str, str | None] | None = None) -> None:
        on_heard(heard)
        emit(heard)
        text, tokens = made()
        emit(ReplyFailed(t=heard.t, error=failure[0], detail=failure[1], text=text, tokens=tokens) if failure is not None
             else ReplyDone(t=heard.t, text=text, tokens=tokens, cancelled=cancelled))
