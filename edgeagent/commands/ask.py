"""``edgeagent ask "text"``: one question through the router, streamed to stdout."""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ask", help="ask the LLM (cloud or embedded, as routed) and stream the answer")
    parser.add_argument("text")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds the embedded model may take to answer (default 60; an emulated or slow board needs more)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.cli import config_from_args
    from edgeagent.daemon import build_router
    from edgeagent.llm.base import LlmError
    from edgeagent.llm.conversation import Conversation
    from edgeagent.llm.router import RouteResult
    from edgeagent.trace import ms_between

    config = config_from_args(args)

    async def main() -> RouteResult:
        router = build_router(config, local_timeout_s=args.timeout)
        try:
            if router.cloud is not None:
                router.cloud_reachable = await router.cloud.probe()
            result = RouteResult()
            messages = Conversation(config.llm.system_prompt).messages_for(args.text)
            async for token in router.stream(messages, result):
                print(token, end="", flush=True)
            print()
            return result
        finally:
            router.close()

    try:
        result = asyncio.run(main())
    except LlmError as exc:
        print(f"edgeagent ask: {exc}", file=sys.stderr)
        return 1
    print(f"[{result.backend}: {result.reason}; first token {ms_between(result.request_t, result.first_token_t)} ms, "
          f"{result.tokens} tokens]", file=sys.stderr)
    return 0
