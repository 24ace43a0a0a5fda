"""``edgeagent ask "text"``: one question through the router, streamed to stdout."""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ask", help="ask the LLM (cloud or embedded, as routed) and stream the answer")
    parser.add_argument("text")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.cli import config_from_args
    from edgeagent.events import LlmRouted, LlmToken
    from edgeagent.llm.base import LlmError
    from edgeagent.llm.conversation import Conversation
    from edgeagent.runtime.stages import build_router
    from edgeagent.turn.trace import ms_between

    config = config_from_args(args)

    async def main() -> str:
        router = build_router(config)
        try:
            if router.cloud is not None:
                router.cloud_reachable = await router.cloud.probe()
            messages = Conversation(config.llm.system_prompt).messages_for(args.text)
            routed: list[LlmRouted] = []
            tokens: list[LlmToken] = []
            async for event in router.stream(messages):
                if isinstance(event, LlmRouted):
                    routed.append(event)
                else:
                    tokens.append(event)
                    print(event.text, end="", flush=True)
            print()
            first = ms_between(routed[0].t, tokens[0].t) if tokens else None
            return f"[{routed[-1].backend}: {routed[-1].reason}; first token {first} ms, {len(tokens)} tokens]"
        finally:
            router.close()

    try:
        summary = asyncio.run(main())
    except LlmError as exc:
        print(f"edgeagent ask: {exc}", file=sys.stderr)
        return 1
    print(summary, file=sys.stderr)
    return 0
