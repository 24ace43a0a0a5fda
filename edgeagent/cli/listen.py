"""``edgeagent listen``: the always-on stage alone — wake detections and speech start/end, with times."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("listen", help="print wake-word detections and speech start/end (from a WAV or the mic)")
    parser.add_argument("--input", help="WAV file (default: the microphone)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.audio import AudioError
    from edgeagent.cli import config_from_args
    from edgeagent.events import NoSpeech, SpeechEnded, SpeechStarted
    from edgeagent.ear.vad import create_endpointer, create_voice_activity
    from edgeagent.ear.wake import WakeModelError, create_wake_detector

    config = config_from_args(args)

    def emit(kind: str, audio_s: float, **extra) -> None:
        if args.json:
            print(json.dumps({"event": kind, "time_s": round(audio_s, 3), **extra}), flush=True)
        else:
            print(f"{audio_s:8.2f}s  {kind}" + "".join(f"  {k}={v}" for k, v in extra.items()), flush=True)

    async def main() -> None:
        wake = create_wake_detector(config)
        endpointer = create_endpointer(config, create_voice_activity(config))
        if args.input:
            from edgeagent.audio.wav import WavSource

            source = WavSource(args.input, config.audio.frame_ms, tail_silence_ms=config.vad.silence_ms + 100)
        else:
            from edgeagent.audio.pyaudio_io import PyAudioMicrophone

            source = PyAudioMicrophone(config.audio.input_device, config.audio.frame_ms)
        async for frame in source.frames():
            for detection in wake.process(frame):
                emit("wake", detection.audio_s, word=detection.word, score=round(detection.score, 3))
                endpointer.begin(frame)
            for event in endpointer.process(frame):
                if isinstance(event, SpeechStarted):
                    emit("speech_start", event.audio_s)
                elif isinstance(event, SpeechEnded):
                    emit("speech_end", event.audio_s, decided_s=round(frame.audio_s + frame.duration_s, 3),
                         reason=event.reason)
                elif isinstance(event, NoSpeech):
                    emit("no_speech", frame.audio_s + frame.duration_s)

    try:
        asyncio.run(main())
    except (AudioError, WakeModelError) as exc:
        print(f"edgeagent listen: {exc}", file=sys.stderr)
        return 1
    return 0
