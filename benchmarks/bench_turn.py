"""End of turn: does it wait for a talker who is not finished, and not for one who is?

Two measures on ``benchmarks.turn_set``:

* decisions (every utterance, every voice, no clock): what the endpointer decides after the pause
  when smart-turn has heard it and Whisper has decoded it: an early end (``complete_silence_ms``) or
  the long wait (``incomplete_silence_ms``).  An early end is right for a finished request and, for
  an unfinished one, a cut-off unless the talker goes on before the answer is heard.
* cut-offs (real time, the real daemon): unfinished requests, a thinking pause, then the rest.  A
  turn is cut off when the agent answered what it had heard so far: more than one turn, a final
  transcript without the rest, or the agent's voice before the user finished.

``python -m benchmarks.bench_turn [--quick]``; ``make bench`` runs the cut-off part.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from benchmarks.speech import voiced_seconds
from benchmarks.turn_set import RATE, Utterance, build
from edgeagent.audio.timeline import ClockedSink
from edgeagent.audio.wav import WavSource, read_audio
from edgeagent.config import Config, apply_partial, load_config

WAKE_GAP_S, TAIL_S = 0.3, 3.0
PAUSES_MS = (600, 900)  # thinking pauses: longer than the 500 ms that ended every turn before


def decision_rates(config: Config, items: list[Utterance]) -> dict[str, dict[str, float]]:
    """Share of early ends per kind (finished / unfinished) and voice family, deciding as the
    endpointer does: smart-turn on the utterance with TURN_CHECK_MS of pause, and the transcript Whisper
    makes of the pause (its speculative decode)."""
    from edgeagent.ear.turn_model import SmartTurn
    from edgeagent.ear.vad import TURN_CHECK_MS, is_complete_sentence
    from edgeagent.modelstore import model_path
    from edgeagent.stt import create_recognizer

    smart = SmartTurn(model_path("smart-turn/v3.2-cpu", config.models_dir))
    whisper = create_recognizer(config, "whisper")
    counts: dict[str, dict[str, list[int]]] = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
    lead = np.zeros(int(config.vad.preroll_ms * RATE / 1000), np.int16)
    for item in items:
        heard = np.concatenate([lead, item.audio, np.zeros(TURN_CHECK_MS * RATE // 1000, np.int16)])
        text = whisper.transcribe(np.concatenate([heard, np.zeros(RATE // 20, np.int16)])).text
        early = smart.probability(heard) >= config.vad.turn_threshold and is_complete_sentence(text)
        kind = "finished" if item.finished else "unfinished"
        for key in ("all", item.voice.split("-")[0]):
            counts[kind][key][0] += early
            counts[kind][key][1] += 1
    whisper.close()
    smart.close()
    return {kind: {key: round(a / b, 3) for key, (a, b) in by.items()} for kind, by in counts.items()}


def cutoff_items(items: list[Utterance], count: int) -> list[Utterance]:
    """``count`` unfinished requests spread over voices, kinds and requests (deterministic)."""
    unfinished = [i for i in items if not i.finished]
    step = max(1, len(unfinished) // count)
    return unfinished[::step][:count]


async def _one(config: Config, engines, item: Utterance, pause_ms: int, workdir: Path, index: int) -> dict:
    import soundfile

    from benchmarks.speech import piper_wav
    from edgeagent.runtime.stages import wire

    wake = read_audio(piper_wav("Alexa."))
    silence = lambda s: np.zeros(int(s * RATE), np.int16)  # noqa: E731
    parts = [silence(0.4), wake, silence(WAKE_GAP_S), item.audio, silence(pause_ms / 1000), item.rest, silence(TAIL_S)]
    user = np.concatenate(parts)
    finished_at = sum(len(p) for p in parts[:-1]) / RATE  # where the user's last word ends
    path = workdir / f"cut{index}.wav"
    soundfile.write(str(path), user, RATE, subtype="PCM_16")
    audio_out = ClockedSink(workdir / f"cut{index}-reply.wav", config.audio.frame_ms)
    stages = wire(config, engines, audio_out, [])
    await stages.controller.run(WavSource(path, config.audio.frame_ms, realtime=True).frames())
    await stages.close()
    await audio_out.close()
    traces = stages.controller.finished
    agent = read_audio(workdir / f"cut{index}-reply.wav")
    spoke_early = voiced_seconds(agent[: int(finished_at * RATE)]) > 0  # the agent talked before the user was done
    heard = (traces[0].transcript or "").lower() if traces else ""
    # the answer was to more than the words before the pause (STT may mishear the rest: "London" -> "love")
    whole = len(traces) == 1 and traces[0].outcome == "answered" and len(_words(heard)) > len(_words(item.text))
    return {"voice": item.voice, "kind": item.kind, "text": item.text, "rest": item.rest_text, "pause_ms": pause_ms,
            "cut_off": spoke_early or not whole, "turns": len(traces), "transcript": heard,
            "continued": sum(getattr(t, "continued", 0) for t in traces),
            "end_of_turn_reason": traces[0].end_of_turn_reason if traces else None}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def run_cutoffs(config: Config, engines, items: list[Utterance], workdir: Path,
                progress=lambda: None) -> dict:
    """Each unfinished request through the real daemon in real time, with a thinking pause; the
    cut-off rate per pause length, and every case."""
    quick = apply_partial(config, {"llm": {"max_tokens": 16}, "agent": {"follow_up_s": 0.0}})
    cases = []
    for index, item in enumerate(items):
        cases.append(asyncio.run(_one(quick, engines, item, PAUSES_MS[index % len(PAUSES_MS)], workdir, index)))
        progress()
    rates = {f"{p} ms": round(sum(c["cut_off"] for c in cases if c["pause_ms"] == p) /
                              max(1, sum(c["pause_ms"] == p for c in cases)), 3) for p in PAUSES_MS}
    return {"cut_off_rate": round(sum(c["cut_off"] for c in cases) / max(1, len(cases)), 3), "by_pause": rates,
            "n": len(cases), "cases": cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_turn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer voices and cases")
    parser.add_argument("--cases", type=int, default=20, help="real-time cut-off cases")
    args = parser.parse_args(argv)
    from edgeagent.runtime.daemon import without_acoustic_echo
    from edgeagent.runtime.stages import load_engines

    config = without_acoustic_echo(load_config(env={}))
    started = time.monotonic()
    items = build(("piper", "hibari", "espeak-us") if args.quick else None)
    print(f"turn set: {len(items)} utterances ({time.monotonic() - started:.0f} s to build)")
    rates = decision_rates(config, items)
    for kind, by in rates.items():
        print(f"early end ({kind}): " + ", ".join(f"{k} {v:.0%}" for k, v in sorted(by.items())))
    engines = load_engines(config)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_cutoffs(config, engines, cutoff_items(items, 8 if args.quick else args.cases), Path(tmp))
    finally:
        engines.close()
    for case in result["cases"]:
        print(f"  {'CUT ' if case['cut_off'] else 'ok  '} {case['voice']:11} {case['kind']:10} {case['pause_ms']} ms "
              f"{case['text']!r} + {case['rest']!r} -> {case['transcript']!r} (turns {case['turns']}, "
              f"continued {case['continued']}, {case['end_of_turn_reason']})")
    print(f"turns cut off: {result['cut_off_rate']:.1%} of {result['n']} ({result['by_pause']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
