"""`make eval`: wake-word and transcript accuracy on voices, rooms and noises the project was not tuned
on (benchmarks.eval_set), printed as tables and written to bench/eval.md with DET curves.

    python -m benchmarks.eval                 # the held-out half: the figures to quote
    python -m benchmarks.eval --split tune    # the tuning half: where thresholds are chosen
    python -m benchmarks.eval --no-stt        # wake words only

Model probabilities are recorded once per set and cached (tests/data/generated/wake-scores); each
threshold is then a replay through the detector's own Trigger.  The configured detector (the
default: see ``wake`` in edgeagent.config) is also run end to end on the same audio, frame by frame,
for the figure that counts, and its CPU cost per audio second is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.eval_set import negative_streams, positives, wake_clips
from benchmarks.eval_tables import det_svg, grid, table
from benchmarks.eval_text import WAKE_PHRASES
from benchmarks.stats import percentile
from edgeagent.config import load_config
from edgeagent.ear.wake import slot_settings

REPORT_DIR = Path(__file__).resolve().parent.parent / "bench"
SNRS = ("clean", "20dB", "10dB")
FAMILIES = ("espeak", "espeak+variant", "piper", "hibari")
CALIBRATION_BUDGET = 0.5  # false accepts per hour: the goal
DET_BUDGETS = (0.1, 0.5, 1.0, 2.0, 5.0, 20.0)  # false accepts per hour at which the DET table reads FRR


def frr_cell(records, threshold: float, window: int) -> str:
    from benchmarks import eval_wake as wake_eval

    misses = sum(wake_eval.hit(track, threshold, window, end) is None for _, end, track in records)
    return f"{misses / len(records):.2f} ({len(records)})"


def wake_section(pool, config, split: str, out: list[str], svgs: dict[str, str]) -> None:
    from benchmarks import eval_wake as wake_eval

    models_dir = config.models_dir
    streams = negative_streams(split)
    curves: dict[str, list[tuple[float, float]]] = {}
    summary, det_rows = [], []
    for engine, names in wake_eval.MODELS.items():
        started = time.monotonic()
        negatives = wake_eval.record_negatives(pool, engine, streams, models_dir)
        print(f"  [{engine}: negatives scored in {time.monotonic() - started:.0f} s]", file=sys.stderr)
        for name in names:
            started = time.monotonic()
            clips = wake_clips(split, name)
            rec = wake_eval.Recorded(wake_eval.record_positives(pool, engine, name, clips, models_dir), negatives[name])
            print(f"  [{engine}/{name}: positives scored in {time.monotonic() - started:.0f} s]", file=sys.stderr)
            info = wake_eval.model_info(engine, name, models_dir)
            threshold, _ = slot_settings(config.wake, info, engine)
            point = wake_eval.operating_point(rec, threshold, info.window)
            curve = wake_eval.det_curve(rec, info.window)
            curves[f"{engine}/{name}"] = [(p.fa_per_hour, p.frr) for p in curve]
            here = wake_eval.calibrate(curve, CALIBRATION_BUDGET)
            summary.append([f"{engine}/{name}", threshold, point.frr, f"{point.false_accepts}",
                            point.fa_per_hour, len(rec.positives), round(rec.negative_hours, 2),
                            f"{here.threshold:g} (FRR {here.frr:.2f}, {here.fa_per_hour:.1f}/h)"])
            det_rows.append([f"{engine}/{name}"] + [_at_budget(curve, b) for b in DET_BUDGETS])
            out.append(f"\n#### {engine}/{name} at threshold {threshold:g}: FRR (positives) by voice family and SNR\n")
            out.append(grid(rec.positives, row=lambda r: r[0].family, col=lambda r: r[0].condition.snr,
                            value=lambda rs: frr_cell(rs, threshold, info.window), rows_order=_present(FAMILIES, rec),
                            cols_order=SNRS, corner="family \\ SNR"))
    out.insert(0, "\n### Wake words, each model alone at its shipped threshold (config defaults: ear/wake.py)\n\n" + table(
        ["engine/model", "threshold", "FRR", "false accepts", "FA/h", "positives", "negative hours",
         f"calibrated on this half (<= {CALIBRATION_BUDGET:g}/h)"], summary)
        + "\n\n### DET: lowest FRR within a false-accept budget (threshold in brackets)\n\n"
        + table(["engine/model", *[f"<= {b:g}/h" for b in DET_BUDGETS]], det_rows))
    svgs[f"det-{split}.svg"] = det_svg(curves, f"DET per model, {split} half ({streams and len(streams)} streams)")


def _at_budget(curve, budget: float) -> str:
    from benchmarks import eval_wake as wake_eval

    point = wake_eval.calibrate(curve, budget)
    return f"{point.frr:.2f} ({point.threshold:g})" if point.fa_per_hour <= budget else "-"


def _present(order, rec) -> list[str]:
    have = {c.family for c, _, _ in rec.positives}
    return [f for f in order if f in have]


def stt_section(config, split: str, out: list[str], label: str, every: int = 1) -> None:
    """The configured detector, endpointer and recognizer on the default wake word's positives."""
    from benchmarks.eval_stt import hear_all, wer

    started = time.monotonic()
    clips = positives(split, config.wake.models[0], with_question=True)[::every]
    heard = hear_all(config, clips)
    print(f"  [STT: {len(heard)} utterances in {time.monotonic() - started:.0f} s]", file=sys.stderr)
    frr = lambda hs: f"{sum(not h.woke for h in hs) / len(hs):.2f} ({len(hs)})"  # noqa: E731
    werc = lambda hs: f"{wer(hs):.3f} ({sum(h.words for h in hs)})"  # noqa: E731
    finish = [h.finish_s * 1000 for h in heard]
    out.append(f"\n### {label}: the configured wake detector end to end on "
               f"{config.wake.models[0]} + question positives\n")
    out.append(f"wake: {config.wake.engine} {'+'.join(config.wake.models)}; FRR {sum(not h.woke for h in heard) / len(heard):.3f}"
               f" on {len(heard)} clips; detector CPU {sum(h.wake_cpu_s for h in heard):.1f} s\n")
    out.append(grid(heard, row=lambda h: h.clip.family, col=lambda h: h.clip.condition.snr, value=frr,
                    rows_order=[f for f in FAMILIES if any(h.clip.family == f for h in heard)], cols_order=SNRS,
                    corner="FRR: family \\ SNR"))
    out.append(f"\n### {label}: STT WER (words in brackets); finish() P50 {percentile(finish, 0.5):.0f} ms, "
               f"P90 {percentile(finish, 0.9):.0f} ms\n")
    out.append(grid(heard, row=lambda h: h.clip.family, col=lambda h: h.clip.condition.snr, value=werc,
                    rows_order=[f for f in FAMILIES if any(h.clip.family == f for h in heard)], cols_order=SNRS,
                    corner="WER: family \\ SNR"))
    out.append("\n" + grid(heard, row=lambda h: h.clip.condition.room, col=lambda h: h.clip.condition.noise,
                             value=werc, corner="WER: room \\ noise"))
    worst = sorted(heard, key=lambda h: -h.errors)[:8]
    out.append("\nWorst transcripts:\n" + "\n".join(
        f"- {h.clip.voice.name} {h.clip.speed_name} {h.clip.condition.noise} {h.clip.condition.snr} "
        f"{h.clip.condition.room}: \"{h.clip.question}\" -> \"{h.hypothesis}\"" for h in worst))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a config TOML (e.g. to run an older checkout on this set)")
    parser.add_argument("--split", choices=("heldout", "tune"), default="heldout")
    parser.add_argument("--no-stt", action="store_true")
    parser.add_argument("--no-wake", action="store_true", help="skip the per-model wake tables")
    parser.add_argument("--label", default="this checkout", help="names the STT run in the report")
    parser.add_argument("--every", type=int, default=1, help="STT: every n-th clip only (a quick look)")
    parser.add_argument("--fresh", action="store_true", help="score every clip again (ignore cached probabilities)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    os.nice(10)  # two shared cores: stay behind interactive work
    started = time.monotonic()
    config = load_config(args.config, env={})
    config.stt.speculate_after_ms, config.stt.partial_interval_s = 0, 0.0  # finish() times the one final decode
    out: list[str] = []
    svgs: dict[str, str] = {}
    if not args.no_wake:
        from benchmarks import eval_wake

        eval_wake.FRESH = args.fresh
        with ProcessPoolExecutor(args.jobs) as pool:
            wake_section(pool, config, args.split, out, svgs)
    if not args.no_stt:
        stt_section(config, args.split, out, args.label, args.every)
    header = (f"# Evaluation, {args.split} half\n\nWake phrases: {', '.join(WAKE_PHRASES.values())}. "
              f"Ran in {time.monotonic() - started:.0f} s.\n")
    report = header + "\n".join(out) + "\n"
    print(report)
    REPORT_DIR.mkdir(exist_ok=True)
    (REPORT_DIR / f"eval-{args.split}.md").write_text(report)
    for name, svg in svgs.items():
        (REPORT_DIR / name).write_text(svg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
