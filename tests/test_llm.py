"""LLM client, embedded model, router and conversation, against real servers on loopback."""

import asyncio
import time

import pytest

from edgeagent.config import load_config
from edgeagent.llm.base import LlmError
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.local import LocalLlama
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.llm.router import CircuitBreaker, LlmRouter, ProbeSchedule, RouteResult
from edgeagent.modelstore import model_path

MESSAGES = [{"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def local():
    return LocalLlama(model_path("llm/smollm2-135m-instruct-q4_1", load_config(None, env={}).models_dir), max_tokens=24)


async def collect(stream):
    return [token async for token in stream]


class FakeCloudServer:
    """A real HTTP server on loopback that misbehaves on purpose: 401, malformed SSE, or stall."""

    def __init__(self, mode: str):
        self.mode = mode
        self.server = None

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aexit__(self, *exc):
        self.server.close()

    async def _handle(self, reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        if self.mode == "stall":
            await asyncio.sleep(30)  # accepted, then nothing: a dead upstream behind a live proxy
        elif self.mode == "401":
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 26\r\n\r\n{\"error\":\"invalid api key\"}"[:90])
        elif self.mode == "malformed":
            body = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: {this is not json\n\n'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


def test_streams_from_an_openai_compatible_server(llama_server):
    _, base = llama_server
    tokens = asyncio.run(collect(OpenAiChat(base, "smollm2", max_tokens=16, timeout_s=60).stream(MESSAGES)))
    assert len(tokens) > 1 and "".join(tokens).strip()


def test_cloud_outage_fails_over_to_the_embedded_model_in_the_same_turn(llama_server, local):
    process, base = llama_server
    router = LlmRouter(local, OpenAiChat(base, "smollm2", max_tokens=8, timeout_s=60), first_token_deadline_s=60)
    result = RouteResult()
    assert asyncio.run(collect(router.stream(MESSAGES, result))) and result.backend == "cloud"
    process.kill()
    process.wait()
    result = RouteResult()
    tokens = asyncio.run(collect(router.stream(MESSAGES, result)))
    assert tokens and result.backend == "local" and result.failover_from == "cloud"
    assert "unreachable" in result.reason and result.first_token_t is not None


def test_stalled_cloud_misses_first_token_deadline_and_fails_over(local):
    async def main():
        async with FakeCloudServer("stall") as base:
            router = LlmRouter(local, OpenAiChat(base, "m", timeout_s=30), first_token_deadline_s=0.5)
            result = RouteResult()
            started = time.monotonic()
            tokens = await collect(router.stream(MESSAGES, result))
            return tokens, result, started

    tokens, result, started = asyncio.run(main())
    assert tokens and result.backend == "local"
    assert "missed first-token deadline" in result.reason
    assert result.first_token_t - started >= 0.5  # waited for the deadline, then answered locally


def test_circuit_opens_after_failures_and_routing_skips_the_cloud(local):
    async def main():
        async with FakeCloudServer("stall") as base:
            router = LlmRouter(local, OpenAiChat(base, "m"), first_token_deadline_s=0.2,
                               breaker=CircuitBreaker(threshold=2, cool_down_s=60))
            for _ in range(2):
                await collect(router.stream(MESSAGES, RouteResult()))
            result = RouteResult()
            await collect(router.stream(MESSAGES, result))
            return result

    result = asyncio.run(main())
    assert result.backend == "local" and result.failover_from is None
    assert "circuit open" in result.reason


def test_unreachable_cloud_known_from_probe_routes_locally(local):
    router = LlmRouter(local, OpenAiChat("http://127.0.0.1:9/v1", "m"))
    router.cloud_reachable = asyncio.run(router.cloud.probe(timeout_s=1))
    assert router.cloud_reachable is False
    backend, reason = router.choose()
    assert backend is local and reason == "cloud unreachable (probe)"


@pytest.mark.parametrize("mode, message", [("401", "rejected the API key"), ("malformed", "malformed SSE")])
def test_http_errors_and_malformed_streams_are_clear_errors(mode, message):
    async def main():
        async with FakeCloudServer(mode) as base:
            return await collect(OpenAiChat(base, "m", api_key="sk-should-not-leak").stream(MESSAGES))

    with pytest.raises(LlmError, match=message) as info:
        asyncio.run(main())
    assert "sk-should-not-leak" not in str(info.value)


def test_closing_the_stream_stops_local_generation(local):
    local.max_tokens = 200

    async def main():
        stream = local.stream([{"role": "user", "content": "Count from one to one hundred."}])
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        deadline = time.monotonic() + 5
        while local.active_threads and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return got

    try:
        assert len(asyncio.run(main())) == 3
        assert local.active_threads == 0  # the worker thread ended: llama.cpp stopped generating
    finally:
        local.max_tokens = 24


def test_conversation_keeps_only_what_was_heard_and_stays_bounded():
    conversation = Conversation("Be brief.", max_turns=2)
    conversation.record("Tell me a story.", "Once upon a time", interrupted=True)
    messages = conversation.messages_for("What time is it?")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[2] == {"role": "assistant", "content": "Once upon a time …"}
    assert messages[-1] == {"role": "user", "content": "What time is it?"}
    for i in range(3):
        conversation.record(f"q{i}", f"a{i}")
    assert [u for u, _ in conversation.turns] == ["q1", "q2"]
    conversation.record("long", "word " * 10000)
    assert len(conversation.turns) <= 1


def test_probe_schedule_backs_off_while_down_and_resets_when_up():
    schedule = ProbeSchedule(interval_s=30, max_backoff_s=120)
    down = [schedule.next(False) for _ in range(8)]
    assert down == [2, 4, 8, 16, 32, 64, 120, 120]  # past the up-interval, up to the cap
    assert schedule.next(True) == 30
    assert schedule.next(False) == 2  # a new outage starts quick again
