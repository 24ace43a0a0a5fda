"""The wake-word levers, measured on recorded probabilities (benchmarks.eval_wake): each lever's
settings are chosen on the tune half under a false-accept budget, then read on the held-out half.

    python -m benchmarks.eval_levers [--word okay_nabu] [--budget 0.5]

- threshold: one model alone, its threshold calibrated (the DET curve's best point in budget);
- two-stage: microWakeWord at a low threshold proposes, openWakeWord confirms if its probability
  reaches a second threshold within ``CONFIRM_BEFORE_S`` before to ``CONFIRM_AFTER_S`` after;
- either: both models alone, each at its own threshold, a detection when either fires;
- conditioning: the same, on audio through WebRTC gain control / noise suppression first.
"""

from __future__ import annotations

import argparse
import itertools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from benchmarks import eval_wake as ew
from benchmarks.eval_set import negative_streams, wake_clips
from benchmarks.eval_tables import table
from edgeagent.config import load_config

CONFIRM_BEFORE_S, CONFIRM_AFTER_S = 1.0, 0.4
GRID_LOW = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
GRID_HIGH = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


@dataclass
class Pair:
    """Both engines' probabilities on the same audio: positives (clip, phrase end) and streams."""

    positives: list[tuple[object, float, ew.Track, ew.Track]]
    negatives: list[tuple[ew.Track, ew.Track]]
    hours: float


def load_pair(pool, split: str, word: str, models_dir, conditioning: str = "", with_oww: bool = True) -> Pair:
    """Both engines' recordings (openWakeWord's unconditioned when ``with_oww`` is off: saves its cost)."""
    clips = wake_clips(split, word)
    streams = negative_streams(split)
    oww_conditioning = conditioning if with_oww else ""
    mp = ew.record_positives(pool, "microwakeword", word, clips, models_dir, conditioning)
    op = ew.record_positives(pool, "openwakeword", word, clips, models_dir, oww_conditioning)
    mn = ew.record_negatives(pool, "microwakeword", streams, models_dir, conditioning)[word]
    on = ew.record_negatives(pool, "openwakeword", streams, models_dir, oww_conditioning)[word]
    assert [c.key for c, _, _ in mp] == [c.key for c, _, _ in op]
    return Pair([(c, e, m, o) for (c, e, m), (_, _, o) in zip(mp, op)], [(m, o) for (_, m), (_, o) in zip(mn, on)],
                sum(t.seconds for _, t in mn) / 3600)


def two_stage_times(m: ew.Track, o: ew.Track, t1: float, t2: float, window: int) -> list[float]:
    """Detection times of the two-stage rule (refractory between confirmed detections)."""
    out: list[float] = []
    for t, _ in ew.fires(m, t1, window, refractory_s=0.0):
        ready = t + CONFIRM_AFTER_S
        if out and ready < out[-1] + ew.REFRACTORY_S:
            continue
        near = (o.ends >= t - CONFIRM_BEFORE_S) & (o.ends <= ready)
        if near.any() and float(o.probs[near].max()) >= t2:
            out.append(ready)
    return out


def either_times(m: ew.Track, o: ew.Track, tm: float, to: float, window: int) -> list[float]:
    times = sorted([t for t, _ in ew.fires(m, tm, window)] + [t for t, _ in ew.fires(o, to, 1)])
    out: list[float] = []
    for t in times:
        if not out or t >= out[-1] + ew.REFRACTORY_S:
            out.append(t)
    return out


def rate(pair: Pair, times_of, hit_after: float = ew.HIT_AFTER_S) -> tuple[float, float]:
    """(FRR, false accepts per hour) of a rule giving detection times for (mww track, oww track)."""
    misses = 0
    for _, end, m, o in pair.positives:
        times = times_of(m, o)
        misses += not any(ew.LEAD_S - 0.1 <= t <= end + hit_after + CONFIRM_AFTER_S for t in times)
    false = sum(len(times_of(m, o)) for m, o in pair.negatives)
    return misses / len(pair.positives), false / pair.hours


@dataclass(frozen=True)
class Choice:
    lever: str
    settings: str
    tune_frr: float
    tune_fa: float
    heldout_frr: float
    heldout_fa: float


def best(pair: Pair, rules: dict[str, object], budget: float, tolerance: float = 0.01) -> tuple[str, float, float]:
    """As eval_wake.calibrate: within budget, the last rule (the strictest: thresholds ascend) whose FRR
    is within ``tolerance`` of the lowest."""
    scored = [(name, *rate(pair, rule)) for name, rule in rules.items()]
    ok = [s for s in scored if s[2] <= budget] or [min(scored, key=lambda s: s[2])]
    lowest = min(s[1] for s in ok)
    return [s for s in ok if s[1] <= lowest + tolerance][-1]


def levers(pool, word: str, budget: float, models_dir, conditionings=("", "agc", "ns+agc"),
           with_oww: bool = True) -> list[Choice]:
    window = ew.model_info("microwakeword", word, models_dir).window
    out = []
    for cond in conditionings:
        tune, held = (load_pair(pool, s, word, models_dir, cond, with_oww) for s in ("tune", "heldout"))
        suffix = f" [{cond}]" if cond else ""
        families = {
            "microwakeword alone": {f"t={t}": (lambda m, o, t=t: [x for x, _ in ew.fires(m, t, window)])
                                    for t in ew.THRESHOLDS},
            "openwakeword alone": {f"t={t}": (lambda m, o, t=t: [x for x, _ in ew.fires(o, t, 1)])
                                   for t in ew.THRESHOLDS},
            "two-stage mww->oww": {f"t1={a} t2={b}": (lambda m, o, a=a, b=b: two_stage_times(m, o, a, b, window))
                                   for a, b in itertools.product(GRID_LOW, GRID_HIGH)},
            "either fires": {f"tm={a} to={b}": (lambda m, o, a=a, b=b: either_times(m, o, a, b, window))
                             for a, b in itertools.product((0.5, 0.7, 0.8, 0.9, 0.95, 0.97), (0.5, 0.7, 0.8, 0.9, 0.95))},
        }
        if cond and not with_oww:
            families = {"microwakeword alone": families["microwakeword alone"]}
        for lever, rules in families.items():
            name, frr, fa = best(tune, rules, budget)
            hfrr, hfa = rate(held, rules[name])
            out.append(Choice(lever + suffix, name, frr, fa, hfrr, hfa))
            print(f"  {lever + suffix}: {name} tune FRR {frr:.3f} FA/h {fa:.2f}; held-out FRR {hfrr:.3f} FA/h {hfa:.2f}",
                  flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--word", default="okay_nabu")
    parser.add_argument("--budget", type=float, default=0.5, help="false accepts per hour allowed on the tune half")
    parser.add_argument("--conditioning", default=",agc,ns+agc", help="comma-separated: '' none, agc, ns, ns+agc")
    parser.add_argument("--mww-only", action="store_true", help="condition microWakeWord's input only (cheap)")
    args = parser.parse_args(argv)
    os.nice(10)
    models_dir = load_config(None, env={}).models_dir
    with ProcessPoolExecutor(2) as pool:
        choices = levers(pool, args.word, args.budget, models_dir, tuple(args.conditioning.split(",")),
                         not args.mww_only)
    print(table(["lever", "chosen on tune", "tune FRR", "tune FA/h", "held-out FRR", "held-out FA/h"],
                [[c.lever, c.settings, c.tune_frr, c.tune_fa, c.heldout_frr, c.heldout_fa] for c in choices]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
