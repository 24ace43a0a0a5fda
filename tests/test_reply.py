"""The reply scope with real engines: the embedded LLM, hibari and the speaker into a WAV.

A held (speculative) reply is made but not played until it is released; one discarded before its
release leaves nothing in the output and nothing in the conversation, and the next reply plays.
"""

import asyncio

import pytest

from edgeagent.audio.playout import Speaker
from edgeagent.config import load_config
from edgeagent.events import FirstAudio, FirstSynth, Heard, ReplyDone
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.local import LocalLlm
from edgeagent.llm.router import LlmRouter
from edgeagent.modelstore import model_path
from edgeagent.turn.reply import ReplyPipeline
from tests.tts_helpers import EventLog, TimedWavSink, synthesizer

SYSTEM = "Answer in one short sentence."


@pytest.fixture(scope="module")
def router():
    config = load_config(env={})
    local = LocalLlm(model_path("llm/smollm2-135m-instruct-q4_1", config.models_dir), max_tokens=16, threads=1,
                     system_prompt=SYSTEM)
    yield LlmRouter(local)
    local.close()


async def follow(reply, log: EventLog) -> None:
    async for event in reply.events():
        log(event)


def pipeline(router, tmp_path):
    voice = synthesizer("hibari")
    sink = TimedWavSink(tmp_path / "out.wav", voice.sample_rate)
    return ReplyPipeline(router, Conversation(SYSTEM), Speaker(voice, sink, realtime=True)), sink


def test_a_held_reply_is_ready_but_silent_until_released(router, tmp_path):
    async def main():
        replies, sink = pipeline(router, tmp_path)
        log = EventLog()
        reply = replies.answer("What is the capital of France?", held=True)
        following = asyncio.create_task(follow(reply, log))
        await asyncio.wait_for(log.until(FirstSynth), 60)
        await asyncio.sleep(0.3)
        silent_while_held = (sink.writes == [] and log.first(FirstAudio) is None)
        released = asyncio.get_running_loop().time()
        reply.release()
        await asyncio.wait_for(following, 60)
        await sink.close()
        return silent_while_held, released, log, sink, replies.conversation

    silent_while_held, released, log, sink, conversation = asyncio.run(main())
    assert silent_while_held
    assert log.first(FirstAudio).t >= released and sink.writes[0][0] >= released
    assert log.first(FirstAudio).t - released < 0.2  # its first audio was ready: it plays at once
    done = log.first(ReplyDone)
    assert not done.cancelled and not done.discarded and done.text
    assert conversation.turns == [("What is the capital of France?", log.first(Heard).text)]


def test_a_discarded_reply_is_never_heard_nor_remembered_and_the_next_one_plays(router, tmp_path):
    async def main():
        replies, sink = pipeline(router, tmp_path)
        first, second = EventLog(), EventLog()
        speculation = replies.answer("What is the capital of", held=True)
        following = asyncio.create_task(follow(speculation, first))
        await asyncio.wait_for(first.until(FirstSynth), 60)
        speculation.cancel()  # the user went on talking
        answer = replies.answer("What is the capital of Spain?")  # made while the discarded one unwinds
        await asyncio.wait_for(asyncio.gather(following, follow(answer, second)), 60)
        await sink.close()
        return first, second, sink, replies.conversation

    first, second, sink, conversation = asyncio.run(main())
    done = first.first(ReplyDone)
    assert done.cancelled and done.discarded and first.first(FirstAudio) is None
    assert first.first(Heard).text == "" and first.first(Heard).played_ms == 0
    written_ms = 1000 * len(sink.audio()) / sink.sample_rate
    assert abs(written_ms - second.first(Heard).played_ms) < 1  # every sample out is the real answer's
    assert conversation.turns == [("What is the capital of Spain?", second.first(Heard).text)]
    assert second.first(Heard).text and not second.first(ReplyDone).cancelled
