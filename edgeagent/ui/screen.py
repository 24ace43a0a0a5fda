"""The page switched on in the daemon: the feed, the server, and where their inputs come from.

It starts before the models load, so a kiosk's browser finds the page at once and shows
"starting" (and a missing microphone) instead of an error page.
"""

from __future__ import annotations

import logging

from edgeagent.config import Config
from edgeagent.fleet.control import DeviceControl
from edgeagent.fleet.device import DeviceState
from edgeagent.ui.access import is_loopback
from edgeagent.ui.feed import Feed

log = logging.getLogger("edgeagent.ui")


def wanted(config: Config) -> bool:
    return config.ui.enabled or config.ui.kiosk


async def start_screen(config: Config, controls: DeviceControl, device_state: DeviceState):
    """The running ``UiServer``, or None when the page is off or cannot start (the voice loop goes on
    without it: a speaker that answers matters more than its screen)."""
    if not wanted(config):
        return None
    try:
        from edgeagent.ui.server import UiServer  # aiohttp: only where the page is on (extra "ui")
    except ImportError as exc:
        log.error("kiosk page off: %s (install the 'ui' extra)", exc)
        return None
    feed = Feed()
    wake_words = [name.replace("_", " ").title() for name in config.wake.models]
    server = UiServer(config.ui, feed, controls,
                      include_text=lambda: device_state.config.telemetry.include_text,  # the config in force
                      hello=lambda: {"device_name": config.device.name, "wake_words": wake_words})
    try:
        await server.start()
    except OSError as exc:
        log.error("kiosk page off: cannot listen on %s port %d: %s", config.ui.listen, config.ui.port, exc)
        return None
    if not is_loopback(config.ui.listen) and not config.ui.token:
        log.warning("the kiosk page listens on %s without ui.token: its controls work on the device's own screen only",
                    config.ui.listen)
    device_state.observers.append(feed.publish_device)
    feed.publish_device(device_state.fields())
    return server
