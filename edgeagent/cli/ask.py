"""``edgeagent ask "text"``: one request as the speaker would take it, answered on stdout: a matching
intent runs its skill on this device (a timer set here rings in the running daemon), anything else
goes through the router to the LLM, told the time and vetted like a spoken answer."""

from __future__ import annotations

import argparse
import asyncio
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("ask", help="ask the agent (intents first, then the LLM as routed); the answer on stdout")
    parser.add_argument("text")
    parser.add_argument("--llm", action="store_true", help="skip the intents: ask the LLM directly")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds the embedded model may take to answer (default 60; an emulated or slow board needs more)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.cli import config_from_args
    from edgeagent.events import ActionDone, LlmRouted, LlmToken
    from edgeagent.intents.home import HomeControl
    from edgeagent.intents.honesty import LIMITS, ClaimVet, time_note
    from edgeagent.intents.matcher import IntentMatcher
    from edgeagent.intents.skills import Skills
    from edgeagent.intents.timers import TimerStore
    from edgeagent.intents.tools import ToolBox
    from edgeagent.llm.base import LlmError
    from edgeagent.llm.conversation import Conversation
    from edgeagent.runtime.stages import build_router
    from edgeagent.tts.chunker import SentenceChunker
    from edgeagent.turn.trace import ms_between

    config = config_from_args(args)
    matcher = IntentMatcher(config.intents)
    # no speaker in this process (volume: "only on the running speaker"), no fleet link (home: "not connected")
    skills = Skills(config, TimerStore(config.state_dir / "timers.json"), None,
                    HomeControl(config.device.id, config.telemetry.include_text, config.intents.confirm_timeout_s))

    async def by_intent() -> str | None:
        match = None if args.llm or not config.intents.enabled else matcher.match(args.text)
        if match is None:
            return None
        outcome = await skills.run(match, "", args.text)
        print(outcome.answer or "(nothing to say)")
        return f"[intent {match.name} {match.slots}, match {match.match_ms} ms, done: {outcome.done}]"

    async def by_llm() -> str:
        router = build_router(config, local_timeout_s=args.timeout)
        try:
            if router.cloud is not None:
                router.cloud_reachable = await router.cloud.probe()
            messages = Conversation(config.llm.system_prompt, limits=LIMITS, note=lambda: time_note(skills.now())
                                    ).messages_for(args.text)
            routed: list[LlmRouted] = []
            tokens: list[LlmToken] = []
            chunker, vet = SentenceChunker(), ClaimVet()
            tools = ToolBox(skills, matcher).for_turn("", args.text)
            async for event in router.stream(messages, tools):
                if isinstance(event, LlmRouted):
                    routed.append(event)
                elif isinstance(event, ActionDone):
                    vet.acted = vet.acted or event.done
                else:
                    tokens.append(event)
                    for chunk in chunker.push(event.text):
                        print(vet(chunk), end=" ", flush=True)
            print(" ".join(vet(chunk) for chunk in chunker.flush()))
            first = ms_between(routed[0].t, tokens[0].t) if tokens else None
            return f"[{routed[-1].backend}: {routed[-1].reason}; first token {first} ms, {len(tokens)} tokens]"
        finally:
            router.close()

    async def main() -> str:
        return await by_intent() or await by_llm()

    try:
        summary = asyncio.run(main())
    except LlmError as exc:
        print(f"edgeagent ask: {exc}", file=sys.stderr)
        return 1
    print(summary, file=sys.stderr)
    return 0
