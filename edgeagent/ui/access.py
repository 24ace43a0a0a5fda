"""Who is looking at the page, and what they may do.

The device's own screen (a browser on the device: a loopback peer that also asked for a loopback
host name, so a page from elsewhere cannot reach in by DNS rebinding) sees transcripts and uses
the controls.  Anyone else needs the provisioned access token (``ui.token``) for the controls, and
sees transcripts and replies only when they may leave the device at all (``telemetry.include_text``).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Viewer:
    on_device: bool
    may_control: bool
    sees_text: bool


def viewer(peer: str | None, host: str | None, authorization: str | None, token: str, include_text: bool) -> Viewer:
    on_device = is_loopback(peer) and is_loopback(host_name(host))
    authorized = bool(token) and hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())
    return Viewer(on_device=on_device, may_control=on_device or authorized, sees_text=on_device or include_text)


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def host_name(host: str | None) -> str:
    """The name in a Host header: ``[::1]:8088`` -> ``::1``, ``localhost:8088`` -> ``localhost``."""
    host = (host or "").strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def same_origin(origin: str | None, host: str | None) -> bool:
    """A browser's Origin header, when it sends one, names this server (no cross-site requests)."""
    return origin is None or origin.lower() in (f"http://{(host or '').lower()}", f"https://{(host or '').lower()}")
