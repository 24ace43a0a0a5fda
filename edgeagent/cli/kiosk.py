"""``edgeagent kiosk``: the page full screen on the device's display (chromium --kiosk under cage)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("kiosk", help="show the agent's page full screen on this device's display (ui.kiosk)")
    parser.add_argument("--check", action="store_true",
                        help="only say whether ui.kiosk is on: exit 0 if so, 1 if not (systemd ExecCondition)")
    parser.add_argument("--print", action="store_true", help="print the command instead of running it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.cli import config_from_args
    from edgeagent.ui.kiosk import kiosk_command, page_url, profile_dir, wait_for_page

    config = config_from_args(args)
    if not config.ui.kiosk:
        print("edgeagent kiosk: ui.kiosk is off", file=sys.stderr)
        return 1
    if args.check:
        return 0
    command = kiosk_command(config.ui, profile_dir())
    if args.print:
        print(" ".join(command))
        return 0
    missing = [name for name in ("cage", "chromium") if shutil.which(name) is None]
    if missing:
        print(f"edgeagent kiosk: {' and '.join(missing)} not installed (apt install cage chromium)", file=sys.stderr)
        return 1
    wait_for_page(page_url(config.ui))
    os.execvp(command[0], command)
    return 1  # not reached
