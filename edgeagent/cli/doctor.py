"""``edgeagent doctor``: a readable table of what is ready and what to fix."""

from __future__ import annotations

import argparse
import json
import sys

from edgeagent.config import ConfigError, load_config, to_toml
from edgeagent.cli.table import print_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("doctor", help="check audio devices, models, config, broker and LLM endpoints")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--show-config", action="store_true", help="also print the config in force (secrets redacted)")
    parser.add_argument("--retry-engines", action="store_true",
                        help="forget engines that crashed at start, so the daemon tries the configured ones again")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.doctor import Check, run_checks

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        # still check everything else (on the defaults), so one run shows every piece to fix
        checks = [Check("config", exc.key, "fail", f"{exc} (the checks below use the defaults)")]
        checks += run_checks(load_config(None, env={}))
        config = None
    else:
        if args.retry_engines:
            from edgeagent.runtime.engine_guard import StartGuard

            forgotten = StartGuard(config.state_dir).forget()
            print(f"forgot the start records of {', '.join(forgotten) or 'no engine'}: the next start tries the configured engines")
        checks = [Check("config", args.config or "(defaults + environment)", "ok", f"device id {config.device.id}")]
        checks += run_checks(config)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=1))
    else:
        marks = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
        print_table(["", "area", "item", "detail"], [[marks[c.level], c.area, c.item, c.detail] for c in checks])
        fails = sum(c.level == "fail" for c in checks)
        warns = sum(c.level == "warn" for c in checks)
        print(f"\n{len(checks)} checks: {fails} to fix, {warns} warnings")
        if args.show_config and config is not None:
            print("\n# config in force\n" + to_toml(config))
    if any(c.level == "fail" for c in checks):
        print("edgeagent doctor: some checks failed (see above)", file=sys.stderr)
        return 1
    return 0
