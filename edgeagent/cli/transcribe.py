"""``edgeagent transcribe FILE.wav``: run a recognizer over a file the way the daemon would."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("transcribe", help="speech to text for an audio file (any rate, width, channels)")
    parser.add_argument("file", help="WAV (or other libsndfile) audio file")
    parser.add_argument("--engine", choices=["whisper", "pocketsphinx", "vosk"], help="default: stt.engine")
    parser.add_argument("--partials", action="store_true", help="print partial hypotheses as they come")
    parser.add_argument("--json", action="store_true", help="one JSON object: text, confidence, engine, partials")
    parser.set_defaults(handler=transcribe)


def transcribe(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import time

    from edgeagent.audio.base import AudioError
    from edgeagent.audio.frames import FRAME_RATE
    from edgeagent.audio.wav import read_audio, split_frames
    from edgeagent.cli import config_from_args
    from edgeagent.stt import SttError, create_recognizer
    from edgeagent.stt.streaming import StreamingTranscriber

    config = config_from_args(args)
    try:
        samples = read_audio(args.file)  # converted to 16 kHz mono int16 whatever the file's format
        recognizer = create_recognizer(config, args.engine)
    except (AudioError, SttError) as exc:
        print(f"edgeagent transcribe: {exc}", file=sys.stderr)
        return 2

    partials: list[dict] = []

    def show(event) -> None:
        partials.append({"t": round(event.t - started, 3), "text": event.text})
        if args.partials and not args.json:
            print(f"... {event.text}", flush=True)

    async def run():
        transcriber = StreamingTranscriber(recognizer, on_partial=show)
        try:
            utterance = transcriber.start()
            for frame in split_frames(samples, config.audio.frame_ms):
                utterance.audio(frame)
                await asyncio.sleep(0)  # let partials be delivered as they come
            return await utterance.finish()
        finally:
            await transcriber.close()
            recognizer.close()

    started = time.monotonic()
    final = asyncio.run(run())
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"text": final.text, "confidence": final.confidence, "engine": final.engine,
                          "audio_s": round(len(samples) / FRAME_RATE, 3), "decode_s": round(elapsed, 3),
                          "partials": partials if args.partials else []}))
    else:
        print(final.text)
    return 0
