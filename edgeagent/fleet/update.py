"""The fleet command ``update {"url", "sha256"}`` on a device: an ``edgeagent.ota.Updater`` bound to
the MQTT link (progress in the ``update`` field of the retained state, the OS image version in
``image``) and the confirmation of a new slot once the device is READY and on the broker."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Callable

from edgeagent.config import Config
from edgeagent.fleet.control import CommandFailed
from edgeagent.ota.updater import UpdateBusy, Updater, UpdateSettings

log = logging.getLogger(__name__)

MAX_URL = 2048
SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def check_url(url: str) -> str | None:
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    return None if re.match(r"^https?://[^\s/]+/\S*$", url) else "must be an http:// or https:// URL"


def check_sha256(value: str) -> str | None:
    return None if SHA256.match(value) else "must be 64 hexadecimal digits"


class DeviceUpdates:
    """What a device's ``DeviceState`` (stand-alone or the daemon's) delegates ``update`` to."""

    def __init__(self, config: Config, link: Any, is_idle: Callable[[], bool]):
        self.link = link
        self.updater = Updater(UpdateSettings.from_config(config),
                               report=lambda record: link.update_state(update=record), is_idle=is_idle)
        image = self.updater.image()
        if image:
            link.update_state(image=image)
        self.updater.resume()

    def ready(self) -> asyncio.Task:
        """The device is READY: confirm a freshly updated slot once the broker is reached (a task the
        caller cancels at shutdown)."""
        return asyncio.get_running_loop().create_task(self._confirm(), name="update-confirm")

    async def start(self, url: str, sha256: str) -> dict[str, Any]:
        try:
            return self.updater.start(url, sha256)
        except UpdateBusy as exc:
            raise CommandFailed(str(exc)) from None

    async def _confirm(self) -> None:
        """The new slot is marked good when the broker is reached before the trial's deadline."""
        deadline = self.updater.settings.confirm_deadline_s

        async def connected() -> bool:
            left = deadline - time.clock_gettime(time.CLOCK_BOOTTIME) - 5.0  # the trial counts from boot
            ok = await asyncio.to_thread(self.link.wait_connected, max(left, 0.0))
            if not ok:
                log.error("update: no broker within %.0f s of boot; the update trial will roll back", deadline)
            return ok

        await self.updater.confirm(connected)
