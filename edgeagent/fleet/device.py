"""A stand-alone fleet device: ``python -m edgeagent.fleet.device [--config FILE]``.

It runs the real FleetLink with a DeviceControl backed by real device state (mute, volume,
config in force) but no voice loop, so ``say`` and ``listen`` answer honestly that the voice
loop is not running.  The daemon's ``edgeagent.runtime.remote.VoiceRemote`` is the same state
(``DeviceState``) with the voice loop behind it.
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
from typing import Any, Callable

from edgeagent.config import Config, load_config, secret_values
from edgeagent.fleet.control import CommandFailed
from edgeagent.fleet.link import FleetLink
from edgeagent.fleet.update import DeviceUpdates
from edgeagent.logsetup import RedactSecrets
from edgeagent.fleet.remote_config import ConfigChange

log = logging.getLogger("edgeagent.fleet.device")
NO_VOICE_LOOP = "not available: voice loop not running"


class DeviceState:
    """What a device reports and a fleet can change with or without a voice loop: mute, volume,
    the config in force and a pending restart, published as retained state through the link.
    ``describe`` adds what the voice loop (or its absence) has to say."""

    def __init__(self, config: Config, describe: Callable[[], dict[str, Any]],
                 is_idle: Callable[[], bool] = lambda: True):
        self.config = config
        self.muted = False
        self.volume = config.audio.volume
        self.restart_requested = asyncio.Event()
        self.link: FleetLink | None = None
        self.updates: DeviceUpdates | None = None
        self.config_changes = 0
        self.started = time.monotonic()
        self._describe = describe
        self._is_idle = is_idle  # nothing a reboot would cut off (an OS update reboots only then)
        self.observers: list[Callable[[dict[str, Any]], None]] = []  # besides the link: the kiosk's screen

    def attach(self, link: FleetLink) -> None:
        self.link = link
        self.config = link.config
        self.volume = self.config.audio.volume
        self.updates = DeviceUpdates(self.config, link, self._is_idle)
        self.publish()

    def ready(self) -> asyncio.Task | None:
        """The device is READY (the daemon: models loaded, microphone open): an updated slot may
        now be confirmed.  Returns the confirmation task, to cancel at shutdown."""
        return self.updates.ready() if self.updates is not None else None

    async def update(self, url: str, sha256: str) -> dict[str, Any]:
        if self.updates is None:
            raise CommandFailed("not attached to the fleet link")
        return await self.updates.start(url, sha256)

    def fields(self) -> dict[str, Any]:
        return {**self._describe(), "mute": self.muted, "volume": self.volume, "group": self.config.device.group or None}

    def publish(self) -> None:
        """The state changed: the link publishes it (rate-limited, latest value wins), observers see it."""
        if self.link is None and not self.observers:
            return
        fields = self.fields()
        if self.link is not None:
            self.link.update_state(**fields)
        for observer in self.observers:
            observer(fields)

    def set_mute(self, mute: bool) -> dict[str, Any]:
        self.muted = mute
        self.publish()
        return {"mute": self.muted}

    def set_volume(self, volume: float) -> dict[str, Any]:
        self.volume = volume
        self.publish()
        return {"volume": self.volume}

    def restart(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_later(0.2, self.restart_requested.set)  # the reply goes out first
        return {"restarting": True}

    def apply_config(self, change: ConfigChange) -> None:
        self.config = change.config
        self.volume = change.config.audio.volume
        self.config_changes += 1
        self.publish()

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started, 1)


class StandaloneDevice:
    """DeviceControl without a voice loop: state that is real, no replies that are not."""

    def __init__(self, config: Config):
        self.device_state = DeviceState(config, describe=lambda: {"state": "idle", "voice_loop": False, "backend": None,
                                                              "last_turn_ms": None})

    async def say(self, text: str) -> dict[str, Any]:
        raise CommandFailed(NO_VOICE_LOOP)

    async def listen(self) -> dict[str, Any]:
        raise CommandFailed(NO_VOICE_LOOP)

    async def cancel(self) -> dict[str, Any]:
        return {"cancelled": False, "reason": "no turn in progress"}

    async def set_mute(self, mute: bool) -> dict[str, Any]:
        return self.device_state.set_mute(mute)

    async def set_volume(self, volume: float) -> dict[str, Any]:
        return self.device_state.set_volume(volume)

    async def restart(self) -> dict[str, Any]:
        return self.device_state.restart()

    async def update(self, url: str, sha256: str) -> dict[str, Any]:
        return await self.device_state.update(url, sha256)

    async def stats(self) -> dict[str, Any]:
        return {"uptime_s": self.device_state.uptime_s(), "turns": 0, "config_changes": self.device_state.config_changes,
                "voice_loop": False}

    async def state(self) -> dict[str, Any]:
        return self.device_state.fields()

    async def apply_config(self, change: ConfigChange) -> None:
        self.device_state.apply_config(change)


async def run_device(config: Config) -> bool:
    """Run until SIGTERM/SIGINT (False) or a ``restart`` command (True)."""
    device = StandaloneDevice(config)
    link = FleetLink(config, device, on_config=device.apply_config)
    device.device_state.attach(link)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    link.start()
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(device.device_state.restart_requested.wait())]
    confirming = device.device_state.ready()
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in [*waiters, *([confirming] if confirming else [])]:
            w.cancel()
        await link.stop()
    return device.device_state.restart_requested.is_set()


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
