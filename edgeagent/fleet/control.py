"""The seam between the fleet link and whatever runs the speaker (the turn controller, or the
stand-alone ``edgeagent.fleet.device`` process).  Commands arrive on paho's network thread and
are run as coroutines on the daemon's event loop, so implementations never need locks."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class CommandFailed(Exception):
    """The device understood the command but cannot do it; the message goes to the caller."""


@runtime_checkable
class DeviceControl(Protocol):
    """What remote commands can do.  Each returns extra fields for the ``{ok: true, ...}``
    result, or raises ``CommandFailed(reason)`` for ``{ok: false, error: reason}``."""

    async def say(self, text: str) -> dict[str, Any]: ...

    async def set_mute(self, mute: bool) -> dict[str, Any]: ...

    async def set_volume(self, volume: float) -> dict[str, Any]: ...

    async def listen(self) -> dict[str, Any]: ...

    async def cancel(self) -> dict[str, Any]: ...

    async def restart(self) -> dict[str, Any]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def state(self) -> dict[str, Any]: ...

    async def update(self, url: str, sha256: str) -> dict[str, Any]: ...
