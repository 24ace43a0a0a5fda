"""``edgeagent provision``: first-boot settings from the boot partition (run by edgeagent-provision.service)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("provision", help="move edgeagent.toml / Wi-Fi settings from the boot partition to /etc")
    parser.add_argument("--root", type=Path, default=Path("/"), help="system root (boot partition at ROOT/boot/firmware)")
    parser.add_argument("--print-device-id", action="store_true", help="print the device id of the config in force, then exit")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.config import load_config
    from edgeagent.provision import Layout, machine_identity, provision

    if args.print_device_id:
        print(load_config(args.config).device.id)
        return 0
    layout = Layout.under(args.root)
    done = provision(layout, machine_identity(args.root))
    if done is None:
        print(f"edgeagent provision: no {layout.boot_dir}/edgeagent.toml, nothing to do")
        return 0
    print(
        f"edgeagent provision: device {done.device_id}: wrote {done.config_path}"
        f" (credentials: {', '.join(done.credentials) or 'none'}; wifi: {'yes' if done.wifi else 'no'});"
        f" removed {', '.join(p.name for p in done.removed)} from {layout.boot_dir}",
        file=sys.stdout,
    )
    return 0
