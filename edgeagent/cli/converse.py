"""``edgeagent converse``: a whole conversation from a WAV, the agent's voice into a time-aligned WAV."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("converse", help="run a conversation from a WAV file and write the agent's replies to a WAV")
    parser.add_argument("--input", required=True, help="WAV with the user's side (wake word, questions, interruptions)")
    parser.add_argument("--output", required=True, help="WAV for the agent's side, time-aligned with the input")
    parser.add_argument("--traces", help="also append each turn trace (JSON lines) to this file")
    parser.add_argument("--fast", action="store_true",
                        help="skip through silence as fast as possible (replies still play in real time)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per turn")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.audio import AudioError
    from edgeagent.cli import config_from_args
    from edgeagent.runtime.daemon import converse_file

    config = config_from_args(args)
    try:
        traces = asyncio.run(converse_file(config, Path(args.input), Path(args.output), realtime=not args.fast,
                                           traces_path=Path(args.traces) if args.traces else None))
    except AudioError as exc:
        print(f"edgeagent converse: {exc}", file=sys.stderr)
        return 1
    for number, trace in enumerate(traces, 1):
        data = trace.to_dict(include_text=True)
        if args.json:
            print(json.dumps(data))
            continue
        print(f"--- turn {number}: {trace.outcome}" + (f" ({trace.error})" if trace.error else ""))
        print(f"  you:   {trace.transcript or ''}")
        print(f"  agent: {trace.heard_reply or trace.reply or ''}")
        print("  trace: " + ", ".join(f"{k}={v}" for k, v in data.items()
                                      if v is not None and k not in ("transcript", "reply", "heard_reply")))
    print(f"{len(traces)} turns; agent audio written to {args.output}")
    return 0 if all(t.outcome != "error" for t in traces) else 1
