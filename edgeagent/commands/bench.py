"""``edgeagent bench``: latency, cost and accuracy of the real daemon, beside the baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmark the voice loop and its baselines; writes bench/report.md")
    parser.add_argument("--turns", type=int, default=30, help="generated turns (default 30)")
    parser.add_argument("--quick", action="store_true", help="a ~2-minute version (8 turns)")
    parser.add_argument("--out", default="bench", help="folder for report.md, results.json and plots")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--compare", metavar="OLD_JSON", help="print the deltas against an earlier results.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.benchmark import compare, headline_rows, run_benchmark
    from edgeagent.cli import config_from_args
    from edgeagent.table import print_table

    config = config_from_args(args)
    results = run_benchmark(config, 8 if args.quick else args.turns, Path(args.out), seed=args.seed)
    print_table(["measure", "value"], headline_rows(results))
    print(f"\nreport: {Path(args.out) / 'report.md'}  (results.json, latency.png, ttfa_breakdown.png, cpu.png)")
    if args.compare:
        print("\nchanges against", args.compare)
        for line in compare(json.loads(Path(args.compare).read_text()), results):
            print("  " + line)
    return 0
