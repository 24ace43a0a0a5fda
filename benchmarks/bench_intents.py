"""Intents: how often generated speech of each built-in sentence reaches the right intent and slots
(per voice, through Whisper as the daemon hears it), how often a question meant for the LLM is
taken for a command, how long matching takes, and time to first audio of intent turns through
the whole daemon (goal: P90 <= end of turn + 250 ms, there is no LLM in the path).

    python -m benchmarks.bench_intents [--turns 12] [--verbose]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.stats import percentiles
from benchmarks.workload import LONG, SHORT, voices
from edgeagent.audio.wav import read_audio

SENTENCES = [
    ("Set a timer for ten minutes.", "HassStartTimer", {"minutes": 10}),
    ("Set a pasta timer for five minutes.", "HassStartTimer", {"minutes": 5, "name": "pasta"}),
    ("Set a timer for one hour and thirty minutes.", "HassStartTimer", {"hours": 1, "minutes": 30}),
    ("Set a timer for ninety seconds.", "HassStartTimer", {"seconds": 90}),
    ("How much time is left on my timer?", "HassTimerStatus", {}),
    ("What timers do I have?", "HassTimerStatus", {}),
    ("Cancel the timer.", "HassCancelTimer", {}),
    ("Cancel all timers.", "HassCancelAllTimers", {}),
    ("Set an alarm for seven thirty in the morning.", "EdgeSetAlarm", {"hour": 7, "minute": 30, "period": "am"}),
    ("Wake me up at six AM.", "EdgeSetAlarm", {"hour": 6, "period": "am"}),
    ("Cancel my alarm.", "EdgeCancelAlarm", {}),
    ("What time is it?", "HassGetCurrentTime", {}),
    ("What's the date today?", "HassGetCurrentDate", {}),
    ("What day is it today?", "HassGetCurrentDate", {}),
    ("Set the volume to fifty percent.", "HassSetVolume", {"volume": 50}),
    ("Turn the volume up.", "HassSetVolumeRelative", {"volume_step": "up"}),
    ("Turn it down.", "HassSetVolumeRelative", {"volume_step": "down"}),
    ("Mute.", "HassMediaPlayerMute", {}),
    ("Unmute.", "HassMediaPlayerUnmute", {}),
    ("Stop.", "HassNevermind", {}),
    ("Never mind.", "HassNevermind", {}),
    ("What can you do?", "EdgeCapabilities", {}),
    ("Turn on the kitchen lights.", "HassTurnOn", {"area": "kitchen", "domain": "light"}),
    ("Turn off the bedroom lights.", "HassTurnOff", {"area": "bedroom", "domain": "light"}),
    ("Turn off the living room lights.", "HassTurnOff", {"area": "living room", "domain": "light"}),
]
TTFA_SENTENCES = ["What time is it?", "Set a timer for ten minutes.", "What's the date today?",
                  "How much time is left on my timer?", "Turn the volume up.", "What can you do?"]


def transcribe(recognizer, path: Path) -> str:
    audio = np.concatenate([np.zeros(3200, np.int16), read_audio(path), np.zeros(8000, np.int16)])
    recognizer.start()
    for i in range(0, len(audio), 320):
        recognizer.feed(audio[i:i + 320])
    return recognizer.finish().text


def match_rates(config, verbose: bool) -> dict:
    from edgeagent.intents.matcher import IntentMatcher
    from edgeagent.stt import create_recognizer

    matcher = IntentMatcher(config.intents)
    recognizer = create_recognizer(config, config.stt.engine)
    per_voice, times, misses = {}, [], []
    questions = SHORT + LONG
    for voice, make in voices().items():
        hits = false_matches = 0
        for text, intent, slots in SENTENCES:
            heard = transcribe(recognizer, make(text))
            match = matcher.match(heard)
            if match is not None:
                times.append(match.match_ms)
            ok = match is not None and match.name == intent and all(match.slots.get(k) == v for k, v in slots.items())
            hits += ok
            if not ok:
                misses.append(f"{voice}: {text!r} heard {heard!r} -> {match.name if match else None} "
                              f"{match.slots if match else ''}")
        for question in questions:
            heard = transcribe(recognizer, make(question))
            match = matcher.match(heard)
            false_matches += match is not None
            if match is not None:
                misses.append(f"{voice}: LLM question {heard!r} taken for {match.name}")
        per_voice[voice] = {"match_rate": hits / len(SENTENCES), "false_match_rate": false_matches / len(questions)}
        print(f"  {voice:11} intents matched {hits:2d}/{len(SENTENCES)} ({hits / len(SENTENCES):.0%}); "
              f"LLM questions taken for a command {false_matches}/{len(questions)}", flush=True)
    recognizer.close()
    if verbose or misses:
        print("  misses:" if misses else "", *("    " + m for m in misses), sep="\n")
    typed = []
    for _ in range(20):  # the typed sentences and questions: matching alone, no STT
        for text in [s[0] for s in SENTENCES] + questions:
            started = time.perf_counter()
            matcher.match(text)
            typed.append((time.perf_counter() - started) * 1000)
    return {"voices": per_voice, "match_ms_spoken": percentiles(times), "match_ms_typed": percentiles(typed)}


async def intent_turns(config, engines, turns: int, workdir: Path) -> list[dict]:
    from benchmarks.speech import concat_wav, espeak_wav, piper_wav
    from edgeagent.audio.timeline import ClockedSink
    from edgeagent.audio.wav import WavSource
    from edgeagent.runtime.daemon import without_acoustic_echo
    from edgeagent.runtime.stages import wire
    from edgeagent.runtime.trace_sinks import JsonlTraceSink

    config = without_acoustic_echo(config)
    traces = []
    for n in range(turns):
        text = TTFA_SENTENCES[n % len(TTFA_SENTENCES)]
        voice = piper_wav(text) if n % 2 == 0 else espeak_wav(text)
        user = concat_wav(workdir / f"user{n}.wav", [0.5, piper_wav("Alexa."), 0.3, voice, 1.0])
        out, jsonl = ClockedSink(workdir / f"out{n}.wav", config.audio.frame_ms), workdir / f"t{n}.jsonl"
        stages = wire(config, engines, out, [JsonlTraceSink(jsonl, include_text=True, pinned=True)])
        await stages.controller.run(WavSource(user, config.audio.frame_ms, realtime=False).frames(), pace_replies=True)
        await stages.close()
        await out.close()
        traces += [json.loads(line) for line in jsonl.read_text().splitlines()]
    return traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_intents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=12, help="intent turns through the daemon for TTFA (0: none)")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--skip-match", action="store_true", help="only the intent turns' TTFA")
    args = parser.parse_args(argv)
    from edgeagent.config import apply_partial, load_config
    from edgeagent.runtime.stages import load_engines

    with open("/proc/loadavg") as fh:
        load_before = fh.read().split()[:3]
    workdir = Path(tempfile.mkdtemp(prefix="bench-intents-"))
    config = apply_partial(load_config(env={}), {"paths": {"state_dir": str(workdir / "state")},
                                                  "agent": {"follow_up_s": 0}})
    if not args.skip_match:
        print(f"Intent match on generated speech: {len(SENTENCES)} built-in sentences and "
              f"{len(SHORT) + len(LONG)} LLM questions x {len(voices())} voices, through {config.stt.engine}")
        rates = match_rates(config, args.verbose)
        print(f"  match time (spoken, matched): {fmt(rates['match_ms_spoken'])}; "
              f"typed, all: {fmt(rates['match_ms_typed'])}")
    if args.turns == 0:
        return 0
    engines = load_engines(config)
    try:
        traces = asyncio.run(intent_turns(config, engines, args.turns, workdir))
    finally:
        engines.close()
    intent = [t for t in traces if t.get("intent") and t.get("ttfa_ms") is not None]
    ttfa = percentiles([t["ttfa_ms"] for t in intent])
    eot = percentiles([t["end_of_turn_ms"] for t in intent])
    margin = percentiles([t["ttfa_ms"] - t["end_of_turn_ms"] for t in intent])
    stt = percentiles([t["end_of_speech_to_final_ms"] for t in intent])
    tts = percentiles([t["tts_first_chunk_ms"] for t in intent])
    after = percentiles([t["ttfa_ms"] - t["end_of_turn_ms"] - t["end_of_speech_to_final_ms"] for t in intent])
    print(f"Intent turns through the daemon: {len(intent)}/{args.turns} answered by an intent")
    print(f"  TTFA {fmt(ttfa)}; end of turn {fmt(eot)}; TTFA - end of turn {fmt(margin)} (goal P90 <= 250 ms)")
    print(f"  end of turn -> STT final {fmt(stt)}; TTS first chunk {fmt(tts)}")
    print(f"  transcript -> first audio (match, skill, TTS, playout): {fmt(after)}")
    with open("/proc/loadavg") as fh:
        print(f"  load average before {' '.join(load_before)}, after {' '.join(fh.read().split()[:3])} "
              f"(2 cores shared: figures above idle are slower)")
    return 0


def fmt(p: dict | None) -> str:
    return "n/a" if not p else f"P50 {p['p50']:.1f} ms, P90 {p['p90']:.1f} ms (n={p['n']})"


if __name__ == "__main__":
    sys.exit(main())
