"""``make bench`` (``python -m benchmarks``): the seeded workload through the real daemon, with the
baselines beside it; latency, cost and accuracy in bench/report.md, results.json and plots.

Measurement lives here, outside the ``edgeagent`` package: nothing of it ships to a speaker."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", help="TOML config file (default: built-in defaults + environment)")
    parser.add_argument("--turns", type=int, default=30, help="generated turns (default 30)")
    parser.add_argument("--quick", action="store_true", help="a ~2-minute version (8 turns)")
    parser.add_argument("--out", default="bench", help="folder for report.md, results.json and plots")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--compare", metavar="OLD_JSON",
                        help="an earlier results.json: its deltas printed, its turns drawn beside this run's")
    parser.add_argument("--cutoff-cases", type=int, default=16, help="real-time cut-off cases (0: none)")
    args = parser.parse_args(argv)

    from benchmarks.workload import compare, headline_rows, run_benchmark
    from edgeagent.cli.table import print_table
    from edgeagent.config import load_config
    from edgeagent.logsetup import setup_logging

    setup_logging()
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    results = run_benchmark(load_config(args.config), 8 if args.quick else args.turns, Path(args.out), seed=args.seed,
                            before=before, cutoff_cases=4 if args.quick else args.cutoff_cases,
                            speculation_turns=3 if args.quick else 6)
    print_table(["measure", "value"], headline_rows(results))
    print(f"\nreport: {Path(args.out) / 'report.md'}  (results.json, latency.png, ttfa_breakdown.png, cpu.png)")
    if before is not None:
        print("\nchanges against", args.compare)
        for line in compare(before, results):
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
