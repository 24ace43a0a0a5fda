"""``edgeagent`` command line: each sub-command lives in its own module under ``edgeagent.cli``.

A command module defines ``register(subparsers)``, which adds its parser and sets
``handler=function(args) -> int``.  Modules import their heavy dependencies inside the handler
so ``edgeagent --help`` stays instant on a Pi.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import edgeagent.cli as verbs
from edgeagent import __version__
from edgeagent.config import ConfigError, load_config, secret_values
from edgeagent.logsetup import redact_secrets, setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeagent", description="Voice-agent daemon for smart speakers and kiosks.")
    parser.add_argument("--version", action="version", version=f"edgeagent {__version__}")
    parser.add_argument("-c", "--config", help="TOML config file (default: $EDGEAGENT_CONFIG, else built-in defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(verbs.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{verbs.__name__}.{info.name}")
        if hasattr(module, "register"):  # helpers such as table.py are no verbs
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as exc:
        print(f"edgeagent: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def config_from_args(args: argparse.Namespace):
    """The config for a command: ``--config`` file (or $EDGEAGENT_CONFIG) plus environment.
    From here on no log line can carry one of its secrets."""
    config = load_config(getattr(args, "config", None))
    redact_secrets(secret_values(config))
    return config
