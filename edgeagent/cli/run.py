"""``edgeagent run``: the voice-agent daemon, on microphone and speaker or on WAV files."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

DEMO_WAV = Path(__file__).resolve().parent.parent / "data" / "demo_conversation.wav"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("run", help="run the voice-agent daemon (microphone + speaker, or WAV files)")
    parser.add_argument("--input", help="WAV file instead of the microphone (paced in real time); '-': raw "
                                        "16 kHz mono s16le PCM on standard input (e.g. from arecord)")
    parser.add_argument("--output", help="WAV file instead of the speaker")
    parser.add_argument("--demo-without-mic", action="store_true",
                        help="if no microphone is found, run the bundled demo conversation instead")
    parser.add_argument("--demo-output", default="out", help="folder for the demo's reply WAV and traces")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.audio import AudioError
    from edgeagent.cli import config_from_args
    from edgeagent.runtime.daemon import run_daemon

    config = config_from_args(args)
    if args.demo_without_mic and not args.input and not _has_microphone(config.audio.input_device):
        return _run_demo(args)
    try:
        restart = asyncio.run(run_daemon(config, Path(args.input) if args.input else None,
                                         Path(args.output) if args.output else None))
    except AudioError as exc:
        print(f"edgeagent run: {exc}", file=sys.stderr)
        return 1
    if restart:  # a remote `restart`: replace this process with a fresh one
        os.execv(sys.executable, [sys.executable, "-m", "edgeagent", *sys.argv[1:]])
    return 0


def _has_microphone(spec: str) -> bool:
    from edgeagent.audio import AudioError
    from edgeagent.audio.pyaudio_io import find_device

    try:
        find_device(spec, "input")
        return True
    except AudioError:
        return False


def _run_demo(args: argparse.Namespace) -> int:
    from edgeagent.cli import converse

    out = Path(args.demo_output)
    print(f"No microphone found: running the demo conversation {DEMO_WAV.name} through the real pipeline.\n"
          f"The agent's voice goes to {out / 'demo-reply.wav'}, the turn traces to {out / 'demo-traces.jsonl'}.\n")
    demo = argparse.Namespace(**{**vars(args), "input": str(DEMO_WAV), "output": str(out / "demo-reply.wav"),
                                 "traces": str(out / "demo-traces.jsonl"), "fast": False, "json": False})
    return converse.run(demo)
