"""One reply: LLM tokens -> sentence chunks -> streaming TTS -> speaker, filling the trace.

Everything is a pipeline of async iterators inside the turn's task, so cancelling that task
(barge-in) closes the LLM stream, stops synthesis and leaves the speaker to be cleared; the
conversation then records only the part of the reply the user heard.
"""

from __future__ import annotations

from typing import AsyncIterator, Callable

from edgeagent.events import PlaybackFinished
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.router import LlmRouter, RouteResult
from edgeagent.turn.trace import TurnTrace, ms_between
from edgeagent.tts.chunker import SentenceChunker
from edgeagent.audio.playout import Speaker


class VoiceResponder:
    """``device`` is the sink that really plays (it reports when the first sample is heard);
    the speaker may write to it through a tap that records the echo reference."""

    def __init__(self, router: LlmRouter, conversation: Conversation, speaker: Speaker, device,
                 on_first_audio: Callable[[], None] = lambda: None):
        self.router = router
        self.conversation = conversation
        self.speaker = speaker
        self.device = device
        self.on_first_audio = on_first_audio

    async def respond(self, text: str, trace: TurnTrace, marks) -> PlaybackFinished:
        route = RouteResult()
        reply: list[str] = []
        chunks = self._chunks(self.router.stream(self.conversation.messages_for(text), route), reply)
        heard: PlaybackFinished | None = None
        try:
            heard = await self._speak(chunks, marks)
            return heard
        finally:  # also on barge-in and errors: close the LLM stream, remember what was heard
            await chunks.aclose()
            heard = heard or self.speaker.heard()
            self.conversation.record(text, heard.played_text, interrupted=heard.cancelled)
            self._fill(trace, route, "".join(reply), heard)

    async def say(self, text: str, marks) -> PlaybackFinished:
        """Speak fixed text (apology, remote `say`) without the LLM."""
        return await self._speak(_one(text), marks)

    async def _speak(self, chunks: AsyncIterator[str], marks) -> PlaybackFinished:
        self.device.on_first_play = self._first_audio(marks)
        return await self.speaker.speak(chunks)

    async def _chunks(self, tokens: AsyncIterator[str], reply: list[str]) -> AsyncIterator[str]:
        chunker = SentenceChunker()
        try:
            async for token in tokens:
                reply.append(token)
                for chunk in chunker.push(token):
                    yield chunk
            for chunk in chunker.flush():
                yield chunk
        finally:
            await tokens.aclose()  # barge-in: close the HTTP stream / stop llama.cpp now

    def _first_audio(self, marks) -> Callable[[float], None]:
        def started(t: float) -> None:
            marks.first_audio = marks.first_audio or t
            self.on_first_audio()

        return started

    def _fill(self, trace: TurnTrace, route: RouteResult, reply: str, heard: PlaybackFinished) -> None:
        times = self.speaker.times
        trace.llm_backend, trace.llm_backend_reason = route.backend, route.reason
        trace.llm_ttft_ms = ms_between(route.request_t, route.first_token_t)
        trace.llm_tokens = route.tokens
        trace.chunk_wait_ms = ms_between(route.first_token_t, times.first_chunk_t)
        trace.tts_first_chunk_ms = ms_between(times.first_chunk_t, times.first_synth_t)
        trace.speak_ms = heard.played_ms
        trace.reply = reply.strip()
        trace.heard_reply = heard.played_text


async def _one(text: str) -> AsyncIterator[str]:
    yield text
