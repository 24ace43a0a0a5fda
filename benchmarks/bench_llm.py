"""LLM figures: embedded time to first token and tokens/s, failover cost, routing decision time.

Usage: python -m benchmarks.bench_llm
"""

from __future__ import annotations

import asyncio
import statistics
import time


from benchmarks.stats import percentile
from edgeagent.config import load_config
from edgeagent.events import LlmRouted, LlmToken
from edgeagent.llm.conversation import Conversation
from edgeagent.llm.openai_client import OpenAiChat
from edgeagent.runtime.stages import build_router

QUESTIONS = ["What is the capital of France?", "How many legs does a spider have?", "Tell me a fun fact about cats.",
             "What is the boiling point of water?", "Who wrote Romeo and Juliet?", "What do bees make?"]


async def stall_server():
    async def handle(reader, writer):
        try:
            await asyncio.sleep(60)  # accepts, never answers
        except asyncio.CancelledError:  # the benchmark is over
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def answer(router, messages) -> tuple[float, float | None, int, float]:
    """(request time, first token time, tokens, end time) of one routed answer."""
    request, tokens = None, []
    async for event in router.stream(messages):
        if isinstance(event, LlmRouted):
            request = request or event.t
        elif isinstance(event, LlmToken):
            tokens.append(event.t)
    return request, tokens[0] if tokens else None, len(tokens), time.monotonic()


async def main() -> None:
    config = load_config(None, env={})
    router = build_router(config)
    conversation = Conversation(config.llm.system_prompt)
    ttft, rates = [], []
    for _ in range(2):
        for question in QUESTIONS:
            request, first, tokens, done = await answer(router, conversation.messages_for(question))
            ttft.append((first - request) * 1000)
            if tokens > 1:
                rates.append((tokens - 1) / (done - first))
    print(f"embedded SmolLM2-135M Q4_1 (llama.cpp server process, {router.local.threads} threads), "
          f"{len(ttft)} requests")
    print(f"  time to first token  P50 {percentile(ttft, .5):6.0f} ms   P90 {percentile(ttft, .9):6.0f} ms")
    print(f"  generation           P50 {percentile(rates, .5):6.1f} tok/s  P90 {percentile(rates, .1):6.1f} tok/s (slowest decile)")

    server = await stall_server()
    port = server.sockets[0].getsockname()[1]
    router.cloud = OpenAiChat(f"http://127.0.0.1:{port}/v1", "m")
    router.first_token_deadline_s = 0.5
    overheads = []
    for question in QUESTIONS[:4]:
        router.breaker.failures = 0
        request, first, _, _ = await answer(router, conversation.messages_for(question))
        local_ttft = percentile(ttft, .5) / 1000
        overheads.append(((first - request) - router.first_token_deadline_s - local_ttft) * 1000)
    server.close()
    print(f"  failover: first token after a stalled cloud = deadline 500 ms + local TTFT + "
          f"{statistics.median(overheads):.0f} ms (median of {len(overheads)}, target <= 50)")

    router.cloud_reachable = False
    started = time.perf_counter()
    for _ in range(10000):
        router.choose()
    print(f"  routing decision with the cloud known down: {(time.perf_counter() - started) / 10000 * 1e6:.1f} µs "
          f"(target <= 1 ms)")
    router.close()


if __name__ == "__main__":
    asyncio.run(main())
