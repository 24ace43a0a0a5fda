"""Kiosk mode: the page full screen on the device's own display, in Debian's chromium under cage (a
Wayland compositor that shows one application, full screen, and nothing else).

``edgeagent kiosk`` (run by ``systemd/edgeagent-kiosk.service`` when ``ui.kiosk`` is on) waits
until the daemon serves the page, then becomes ``cage -- chromium --kiosk URL``.  The URL is on
loopback, so the screen is "the device's own": it gets the controls and the captions without a token.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from edgeagent.config import UiConfig
from edgeagent.ui.access import is_loopback

CHROMIUM_FLAGS = (
    "--kiosk", "--ozone-platform=wayland", "--no-first-run", "--noerrdialogs", "--disable-infobars",
    "--disable-session-crashed-bubble", "--disable-features=Translate,MediaRouter", "--disable-pinch",
    "--overscroll-history-navigation=0", "--password-store=basic", "--check-for-update-interval=31536000",
)


def page_url(ui: UiConfig) -> str:
    """Where a browser on the device finds the page: loopback unless the page listens only elsewhere."""
    host = ui.listen
    if host in ("", "0.0.0.0", "::") or is_loopback(host):
        host = "::1" if host in ("::", "::1") else "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{ui.port}/"


def kiosk_command(ui: UiConfig, profile: Path) -> list[str]:
    """cage showing chromium in kiosk mode on the page (``profile``: chromium's own writable folder)."""
    return ["cage", "-d", "--", "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page_url(ui)]


def profile_dir() -> Path:
    """systemd's StateDirectory for the kiosk unit, else a folder in the user's cache."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / "chromium" if state else Path.home() / ".cache" / "edgeagent-kiosk"


def wait_for_page(url: str, timeout_s: float | None = None, poll_s: float = 1.0) -> bool:
    """True once the daemon answers on ``url`` (it serves the page while its models load), False
    at ``timeout_s``: a browser pointed at a page that is not there yet would show an error page."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url + "api/state", timeout=5):
                return True
        except (urllib.error.URLError, OSError):
            pass
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
