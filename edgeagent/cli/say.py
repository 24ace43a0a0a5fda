"""``edgeagent say "text" [--output out.wav]``: speak text (or render it) and print time to first audio."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("say", help="speak text with the configured voice (or write it to a WAV file)")
    parser.add_argument("text", help="what to say")
    parser.add_argument("--output", "-o", help="WAV file to write instead of playing on the speaker")
    parser.add_argument("--engine", choices=["hibari", "piper", "espeak"], help="override tts.engine")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from edgeagent.audio.base import AudioError
    from edgeagent.cli import config_from_args
    from edgeagent.tts.base import TtsError
    from edgeagent.tts.factory import create_synthesizer
    from edgeagent.audio.output import open_audio_out
    from edgeagent.events import ChunkQueued, FirstAudio
    from edgeagent.audio.playout import Speaker

    if not args.text.strip():
        print("edgeagent say: nothing to say (empty text)", file=sys.stderr)
        return 2
    config = config_from_args(args)
    if args.engine:
        config.tts.engine = args.engine

    async def speak() -> None:
        synthesizer = create_synthesizer(config)
        audio_out = open_audio_out(config, args.output, file_rate=synthesizer.sample_rate)
        speaker = Speaker(synthesizer, audio_out, frame_ms=config.audio.frame_ms, realtime=not args.output)
        seen: dict[type, float] = {}

        async def text():
            yield args.text

        try:
            heard = await speaker.speak(text(), emit=lambda event: seen.setdefault(type(event), event.t))
        finally:
            await audio_out.close()
            await speaker.close()
        ttfa = 1000 * (seen[FirstAudio] - seen[ChunkQueued]) if FirstAudio in seen else float("nan")
        where = args.output or "speaker"
        print(f"{synthesizer.name}: first audio after {ttfa:.0f} ms; {heard.played_ms / 1000:.2f} s of audio -> {where}")

    try:
        asyncio.run(speak())
    except (TtsError, AudioError) as exc:
        print(f"edgeagent say: {exc}", file=sys.stderr)
        return 1
    return 0
