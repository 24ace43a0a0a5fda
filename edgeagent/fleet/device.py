"""A stand-alone fleet device: ``python -m edgeagent.fleet.device [--config FILE]``.

It runs the real FleetLink with a DeviceControl backed by real device state (mute, volume,
config in force) but no voice loop, so ``say`` and ``listen`` answer honestly that the voice
loop is not running.  The turn controller replaces ``StandaloneDevice`` with itself.
``restart`` really restarts: the link says ``offline``, then the process re-executes itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Any

from edgeagent.config import Config, load_config, secret_values
from edgeagent.fleet.control import CommandFailed
from edgeagent.fleet.link import FleetLink
from edgeagent.fleet.update import DeviceUpdates
from edgeagent.logsetup import RedactSecrets
from edgeagent.fleet.remote_config import ConfigChange

log = logging.getLogger("edgeagent.fleet.device")
NO_VOICE_LOOP = "not available: voice loop not running"


class StandaloneDevice:
    """DeviceControl without a voice loop: state that is real, no replies that are not."""

    def __init__(self, config: Config):
        self.config = config
        self.muted = False
        self.volume = config.audio.volume
        self.restart_requested = asyncio.Event()
        self.link: FleetLink | None = None
        self.updates: DeviceUpdates | None = None
        self.config_changes = 0
        self._started = time.monotonic()

    def attach(self, link: FleetLink) -> None:
        self.link = link
        self.config = link.config
        self.volume = self.config.audio.volume
        link.update_state(group=self.config.device.group or None, **self._state_fields())
        self.updates = DeviceUpdates(self.config, link, self.is_idle)

    def is_idle(self) -> bool:
        """Nothing a reboot would cut off (the voice loop: no turn in progress)."""
        return True

    def _state_fields(self) -> dict[str, Any]:
        return {"state": "idle", "voice_loop": False, "mute": self.muted, "volume": self.volume, "backend": None,
                "last_turn_ms": None}

    def _changed(self) -> None:
        if self.link is not None:
            self.link.update_state(**self._state_fields())

    async def say(self, text: str) -> dict[str, Any]:
        raise CommandFailed(NO_VOICE_LOOP)

    async def listen(self) -> dict[str, Any]:
        raise CommandFailed(NO_VOICE_LOOP)

    async def cancel(self) -> dict[str, Any]:
        return {"cancelled": False, "reason": "no turn in progress"}

    async def set_mute(self, mute: bool) -> dict[str, Any]:
        self.muted = mute
        self._changed()
        return {"mute": self.muted}

    async def set_volume(self, volume: float) -> dict[str, Any]:
        self.volume = volume
        self._changed()
        return {"volume": self.volume}

    async def restart(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.2, self.restart_requested.set)  # reply goes out first
        return {"restarting": True}

    async def update(self, url: str, sha256: str) -> dict[str, Any]:
        if self.updates is None:
            raise CommandFailed("not attached to the fleet link")
        return await self.updates.start(url, sha256)

    async def stats(self) -> dict[str, Any]:
        return {"uptime_s": round(time.monotonic() - self._started, 1), "turns": 0,
                "config_changes": self.config_changes, "voice_loop": False}

    async def state(self) -> dict[str, Any]:
        return self._state_fields()

    async def apply_config(self, change: ConfigChange) -> None:
        self.config = change.config
        self.volume = change.config.audio.volume
        self.config_changes += 1
        self._changed()


async def run_device(config: Config) -> bool:
    """Run until SIGTERM/SIGINT (False) or a ``restart`` command (True)."""
    device = StandaloneDevice(config)
    link = FleetLink(config, device, on_config=device.apply_config)
    device.attach(link)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link.start()
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(device.restart_requested.wait())]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await link.stop()
    return device.restart_requested.is_set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeagent.fleet.device", description=__doc__.split("\n")[0])
    parser.add_argument("-c", "--config", help="TOML config file")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets(secret_values(config)))
    if asyncio.run(run_device(config)):
        log.info("restarting on request")
        os.execv(sys.executable, [sys.executable, "-m", "edgeagent.fleet.device", *(argv or sys.argv[1:])])
    return 0


if __name__ == "__main__":
    sys.exit(main())
