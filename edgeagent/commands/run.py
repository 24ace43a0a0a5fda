"""``edgeagent run``: the voice loop daemon."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the voice-agent daemon (microphone + speaker, or WAV files)")
    parser.add_argument("--input", help="WAV file instead of the microphone")
    parser.add_argument("--output", help="WAV file instead of the speaker")
    parser.add_argument("--demo", action="store_true", help="run the bundled demo conversation")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(
        "edgeagent run: the voice loop (turn controller) is not built yet (issue: 'The voice loop end to end').\n"
        "Ready now: config, audio I/O, models (`edgeagent models list`), `edgeagent doctor`.",
        file=sys.stderr,
    )
    return 3
