"""Time to first audio of the whole voice loop, stage by stage, over generated turns.

Each turn is a real-time WAV (wake word + question, several voices) through the daemon's own
wiring with the embedded LLM.  Prints P50/P90/max per stage and the pipeline's own overhead:
TTFA minus every stage's compute (end-of-turn wait, STT final, LLM TTFT, chunk wait, TTS first
chunk).  Usage: python -m benchmarks.bench_voice_loop [--turns N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.speech import concat_wav, espeak_wav, piper_wav
from benchmarks.stats import percentiles
from edgeagent.audio.timeline import ClockedSink
from edgeagent.audio.wav import WavSource
from edgeagent.config import load_config
from edgeagent.runtime.daemon import without_acoustic_echo
from edgeagent.runtime.stages import load_engines, wire

QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?", "What color is the sky?",
    "Who wrote Romeo and Juliet?", "What is two plus two?", "Name a fruit that is yellow.",
    "What is the largest ocean?", "How many days are in a week?", "What do bees make?",
    "Tell me a fun fact about cats.", "What is the boiling point of water?", "Which planet is the red planet?",
]
VOICES = [lambda t: piper_wav(t), lambda t: espeak_wav(t), lambda t: espeak_wav(t, "en-gb"),
          lambda t: espeak_wav(t, "en-us+f3", 150), lambda t: piper_wav(t, length_scale=1.15)]
STAGES = ["end_of_turn_ms", "end_of_speech_to_final_ms", "llm_ttft_ms", "chunk_wait_ms", "tts_first_chunk_ms",
          "ttfa_ms"]


def summarize(traces: list[dict]) -> dict:
    answered = [t for t in traces if t["outcome"] == "answered" and t["ttfa_ms"] is not None]
    rows = {}
    for stage in STAGES + ["overhead_ms"]:
        values = [t[stage] for t in answered if t.get(stage) is not None]
        if values:
            rows[stage] = {**percentiles(values), "mean": round(statistics.fmean(values), 1)}
    return {"turns": len(traces), "answered": len(answered), "stages": rows}


async def run_turns(turns: int, workdir: Path) -> list[dict]:
    config = without_acoustic_echo(load_config(None, env={}))
    engines = load_engines(config)
    engines.router.local.max_tokens = 24
    traces = []
    for index in range(turns):
        question = QUESTIONS[index % len(QUESTIONS)]
        voice = VOICES[index % len(VOICES)]
        user = concat_wav(workdir / f"turn{index}.wav", [0.4, piper_wav("Alexa."), 0.3, voice(question), 0.3])
        audio_out = ClockedSink(workdir / f"reply{index}.wav", config.audio.frame_ms)
        stages = wire(config, engines, audio_out, [])  # a fresh conversation per turn
        await stages.controller.run(WavSource(user, config.audio.frame_ms, realtime=True).frames())
        await stages.close()
        await audio_out.close()
        for trace in stages.controller.finished:
            data = trace.to_dict()
            parts = [data.get(s) for s in STAGES[:-1]]
            if data["ttfa_ms"] is not None and None not in parts:
                data["overhead_ms"] = round(data["ttfa_ms"] - sum(parts), 1)
            traces.append(data)
        print(f"\rturn {index + 1}/{turns}: {traces[-1]['outcome'] if traces else '-'} "
              f"ttfa={traces[-1].get('ttfa_ms') if traces else '-'} ms   ", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    engines.close()
    return traces


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--json", help="write the summary and every trace here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        traces = asyncio.run(run_turns(args.turns, Path(tmp)))
    summary = summarize(traces)
    print(f"voice loop, embedded LLM: {summary['answered']}/{summary['turns']} turns answered")
    print(f"{'stage':28} {'P50':>8} {'P90':>8} {'max':>8}")
    for stage, row in summary["stages"].items():
        print(f"{stage:28} {row['p50']:8.1f} {row['p90']:8.1f} {row['max']:8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "traces": traces}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
