"""systemd integration: readiness, status, watchdog and stop notifications (sd_notify).

Uses systemd-python's ``systemd.daemon.notify`` when installed, else writes the same datagram
to ``$NOTIFY_SOCKET`` itself; outside systemd (no NOTIFY_SOCKET) every call is a no-op.  The
watchdog is pinged from the event loop itself, so a stalled loop stops the pings and systemd
restarts the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("edgeagent.runtime.service")


def notify(message: str) -> bool:
    """Send one sd_notify message (e.g. ``READY=1``); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    try:
        from systemd import daemon

        return bool(daemon.notify(message))
    except ImportError:
        pass
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WatchdogSec (systemd's advice), or None when no watchdog is configured."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def watchdog_loop() -> None:
    """Ping WATCHDOG=1 from the event loop; runs until cancelled."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
