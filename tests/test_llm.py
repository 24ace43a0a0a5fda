"""LLM client, embedded model, router and conversation, against real servers on loopback."""

import asyncio
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from edgeagent.config import load_config
from edgeagent.llm.base import LlmError
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.local import LocalLlm, LlmWorker
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.events import LlmRouted, LlmToken
from edgeagent.llm.router import CircuitBreaker, LlmRouter, ProbeSchedule
from edgeagent.modelstore import model_path

MESSAGES = [{"role": "system", "content": "Answer in one short sentence."},
            {"role": "user", "content": "What is the capital of France?"}]


GGUF = model_path("llm/smollm2-135m-instruct-q4_1", load_config(None, env={}).models_dir)


@pytest.fixture(scope="module")
def local():
    backend = LocalLlm(GGUF, max_tokens=24, threads=1, system_prompt="Answer in one short sentence.")
    yield backend
    backend.close()


def tokens_generated(address: str) -> float:
    """llama.cpp's own count of generated tokens (its Prometheus metrics)."""
    text = urllib.request.urlopen(address + "/metrics", timeout=10).read().decode()
    return float(re.search(r"^llamacpp:tokens_predicted_total (\S+)$", text, re.M).group(1))


async def collect(stream):
    return [token async for token in stream]


async def route(router, messages=MESSAGES):
    """(tokens, the LlmRouted events) of one routed answer."""
    events = await collect(router.stream(messages))
    return [e for e in events if isinstance(e, LlmToken)], [e for e in events if isinstance(e, LlmRouted)]


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
    tokens, routes = asyncio.run(route(router))
    assert tokens and [r.backend for r in routes] == ["cloud"] and {t.backend for t in tokens} == {"cloud"}
    process.kill()
    process.wait()
    tokens, routes = asyncio.run(route(router))
    assert tokens and [r.backend for r in routes] == ["cloud", "local"]  # failed over in the same turn
    assert {t.backend for t in tokens} == {"local"}
    assert routes[1].reason.startswith("failover: cloud") and "unreachable" in routes[1].reason


def test_stalled_cloud_misses_first_token_deadline_and_fails_over(local):
    async def main():
        async with FakeCloudServer("stall") as base:
            router = LlmRouter(local, OpenAiChat(base, "m", timeout_s=30), first_token_deadline_s=0.5)
            started = time.monotonic()
            tokens, routes = await route(router)
            return tokens, routes, started

    tokens, routes, started = asyncio.run(main())
    assert tokens and routes[-1].backend == "local"
    assert "missed first-token deadline" in routes[-1].reason
    assert tokens[0].t - started >= 0.5  # waited for the deadline, then answered locally


def test_circuit_opens_after_failures_and_routing_skips_the_cloud(local):
    async def main():
        async with FakeCloudServer("stall") as base:
            router = LlmRouter(local, OpenAiChat(base, "m"), first_token_deadline_s=0.2,
                               breaker=CircuitBreaker(threshold=2, cool_down_s=60))
            for _ in range(2):
                await route(router)
            return (await route(router))[1]

    routes = asyncio.run(main())
    assert [r.backend for r in routes] == ["local"]  # no cloud attempt, no failover
    assert "circuit open" in routes[0].reason


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
    address = local.worker.address
    before = tokens_generated(address)

    async def main():
        stream = local.stream([{"role": "user", "content": "Count from one to one hundred."}])
        got = [await anext(stream) for _ in range(3)]
        await stream.aclose()
        await asyncio.sleep(1.0)  # were it still generating, ~40 more tokens would come in this second
        return got

    try:
        assert len(asyncio.run(main())) == 3
        generated = tokens_generated(address) - before
        assert generated <= 3 + 3, f"llama.cpp generated {generated} tokens for a stream closed after 3"
    finally:
        local.max_tokens = 24


def test_the_local_models_memory_does_not_grow_with_the_prompts_it_has_seen(local):
    """llama.cpp's server keeps host-RAM copies of earlier prompts (up to 8 GiB by default, ~1 MiB a
    turn): on a 1 GB speaker that is a slow leak.  Switched off, a dozen different questions leave
    the process's memory where it was."""
    import psutil

    process = psutil.Process(local.worker.pid)

    async def ask(question):
        return await collect(local.stream([MESSAGES[0], {"role": "user", "content": question}]))

    asyncio.run(ask("Warm up, please."))
    before = process.memory_info().rss
    for n in range(12):
        asyncio.run(ask(f"Tell me one fact about the number {n * 7 + 3} and a colour."))
    assert process.memory_info().rss - before < 4 * 2**20


def test_a_crash_of_the_local_model_ends_only_its_answer_and_it_comes_back():
    """SIGSEGV in llama.cpp mid-answer: the stream fails with the signal named, the worker restarts,
    the next request is answered, and this (the daemon's) process never noticed a thing."""
    backend = LocalLlm(GGUF, max_tokens=200, threads=1)
    try:
        first_pid = backend.worker.pid

        async def crash_mid_answer():
            stream = backend.stream([{"role": "user", "content": "Count from one to one hundred."}])
            await anext(stream)
            os.kill(first_pid, signal.SIGSEGV)
            return [token async for token in stream]

        with pytest.raises(LlmError, match="crashed \\(SIGSEGV\\)"):
            asyncio.run(crash_mid_answer())
        deadline = time.monotonic() + 60
        while backend.worker.address is None and time.monotonic() < deadline:
            time.sleep(0.1)
        status = backend.worker.status()
        assert status.running and status.restarts == 1 and status.last_exit == "SIGSEGV"
        assert backend.worker.pid != first_pid
        backend.max_tokens = 8
        assert asyncio.run(collect(backend.stream(MESSAGES)))
    finally:
        backend.close()
    assert backend.worker.address is None


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF but not really")
    worker = LlmWorker(bad)
    with pytest.raises(LlmError, match="ended before it answered"):
        worker.start(wait=True)


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


def test_the_installed_llm_engine_carries_no_cpu_specific_kernels_of_the_build_host():
    """The wheel must run on any x86-64 speaker or server: no AMX tile or AVX-512 instructions in
    llama.cpp (a build for the build host's CPU turned on AMX kernels that segfault on AMX Xeons)."""
    import importlib.util
    import platform
    import shutil

    if platform.machine() != "x86_64":
        pytest.skip("x86-64 instruction check")
    library = Path(importlib.util.find_spec("xllamacpp").origin).with_name("xllamacpp.abi3.so")
    assert library.is_file() and shutil.which("objdump"), "objdump (binutils) and xllamacpp are installed by make install"
    found: dict[str, int] = {}
    with subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", str(library)], stdout=subprocess.PIPE, text=True) as dis:
        for line in dis.stdout:
            for marker in ("tdpbssd", "tdpbusd", "tdpbf16ps", "tileloadd", "zmm"):
                if marker in line:
                    found[marker] = found.get(marker, 0) + 1
    assert dis.returncode == 0
    assert not found, f"host-specific instructions in {library.name}: {found}"
