"""``edgeagent say "text"``: speak (or write a WAV) and print the time to first audio."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("say", help="speak text with the configured voice (or write it to a WAV)")
    parser.add_argument("text")
    parser.add_argument("--output", help="write a WAV instead of playing on the speaker")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.audio import AudioError
    from edgeagent.audio.pyaudio_io import PyAudioSpeaker
    from edgeagent.audio.wav import WavSink
    from edgeagent.cli import config_from_args
    from edgeagent.tts import TtsError, create_synthesizer
    from edgeagent.tts.chunker import SentenceChunker
    from edgeagent.tts.player import ReplyPlayer

    config = config_from_args(args)

    async def main() -> tuple[float, float]:
        synthesizer = create_synthesizer(config)
        sink = WavSink(args.output, sample_rate=synthesizer.sample_rate) if args.output else \
            PyAudioSpeaker(config.audio.output_device, config.audio.output_rate, synthesizer.sample_rate)
        first: list[float] = []
        started = time.monotonic()

        async def chunks():
            chunker = SentenceChunker()
            for chunk in chunker.push(args.text) + chunker.flush():
                yield chunk

        player = ReplyPlayer(synthesizer, _FirstWrite(sink, first))
        heard = await player.play(chunks())
        await sink.close()
        return (first[0] - started) * 1000, heard.played_ms

    try:
        ttfa_ms, played_ms = asyncio.run(main())
    except (AudioError, TtsError) as exc:
        print(f"edgeagent say: {exc}", file=sys.stderr)
        return 1
    where = args.output or "the speaker"
    print(f"time to first audio: {ttfa_ms:.0f} ms; {played_ms / 1000:.2f} s of speech to {where}")
    return 0


class _FirstWrite:
    """Wraps a sink to note when the first audio reaches it (a WAV file has no playback clock)."""

    def __init__(self, sink, first: list[float]):
        self._sink, self._first = sink, first
        self.sample_rate = sink.sample_rate
        self.on_first_play = None

    @property
    def played_samples(self) -> int:
        return getattr(self._sink, "played_samples", getattr(self._sink, "samples_written", 0))

    @property
    def queued_samples(self) -> int:
        return getattr(self._sink, "queued_samples", 0)

    async def write(self, pcm) -> None:
        if not self._first:
            self._first.append(time.monotonic())
        await self._sink.write(pcm)
