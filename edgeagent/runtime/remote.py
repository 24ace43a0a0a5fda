"""Fleet commands (``say``, ``mute``, ``volume``, ``listen``, ``cancel``, ``restart``, ...) and remote
config acting on the running voice loop.

The device state the fleet sees (mute, volume, config in force) is the same ``DeviceState`` the
stand-alone fleet device keeps; here the voice loop stands behind it, so every command acts on
the agent that is actually running, and a valid remote config reaches the stages through
``Stages.configure``.
"""

from __future__ import annotations

from typing import Any

from edgeagent.config import Config
from edgeagent.events import AgentState
from edgeagent.fleet.control import CommandFailed
from edgeagent.fleet.device import DeviceState
from edgeagent.fleet.remote_config import ConfigChange
from edgeagent.runtime.stages import Stages
from edgeagent.turn.controller import TurnController


class VoiceRemote:
    """DeviceControl of the daemon: fleet commands on the turn controller and the speaker."""

    def __init__(self, config: Config):
        self.device_state = DeviceState(config, describe=self._describe, is_idle=self._is_idle)
        self.stages: Stages | None = None

    def attach(self, stages: Stages) -> None:
        """The voice loop is up: it takes the fleet's mute and volume, and reports from now on; home
        commands go out over the link, and a volume changed by voice is reported like a remote one."""
        self.stages = stages
        stages.controller.set_muted(self.device_state.muted)
        stages.speaker.set_volume(self.device_state.volume)
        skills = stages.replier.skills
        skills.home.channel = self.device_state.link
        if skills.volume is not None:
            skills.volume.on_change = self.device_state.set_volume
        self.device_state.publish()

    def _describe(self) -> dict[str, Any]:
        if self.stages is None:
            return {"state": "starting", "voice_loop": False, "backend": None, "last_turn_ms": None, "degraded": {}}
        controller = self.stages.controller
        last = controller.finished[-1] if controller.finished else None
        return {"state": controller.state.value, "voice_loop": True, "backend": last.llm_backend if last else None,
                "last_turn_ms": last.ttfa_ms if last else None, "degraded": dict(self.stages.engines.degraded)}

    def _is_idle(self) -> bool:
        """No turn, reply or timer ring in progress: an OS update may reboot now."""
        return self.stages is not None and self.stages.controller.state == AgentState.IDLE \
            and self.stages.controller.turn is None

    def _controller(self) -> TurnController:
        if self.stages is None:
            raise CommandFailed("the voice loop is still starting")
        return self.stages.controller

    async def say(self, text: str) -> dict[str, Any]:
        controller = self._controller()
        if not controller.announce(text):
            raise CommandFailed(f"busy: the agent is {controller.state.value}")
        return {"speaking": True}

    async def listen(self) -> dict[str, Any]:
        controller = self._controller()
        if controller.state != AgentState.IDLE or self.device_state.muted:
            raise CommandFailed("muted" if self.device_state.muted else f"busy: the agent is {controller.state.value}")
        controller.listen()
        return {"listening": True}

    async def cancel(self) -> dict[str, Any]:
        controller = self._controller()
        if controller.turn is None:
            return {"cancelled": False, "reason": "no turn in progress"}
        controller.cancel()
        return {"cancelled": True}

    async def set_mute(self, mute: bool) -> dict[str, Any]:
        if self.stages is not None:
            self.stages.controller.set_muted(mute)
        return self.device_state.set_mute(mute)

    async def set_volume(self, volume: float) -> dict[str, Any]:
        if self.stages is not None:
            self.stages.speaker.set_volume(volume)
        return self.device_state.set_volume(volume)

    async def restart(self) -> dict[str, Any]:
        return self.device_state.restart()

    async def update(self, url: str, sha256: str) -> dict[str, Any]:
        return await self.device_state.update(url, sha256)

    async def stats(self) -> dict[str, Any]:
        controller = self._controller()
        outcomes: dict[str, int] = {}
        for trace in controller.finished:
            outcomes[trace.outcome] = outcomes.get(trace.outcome, 0) + 1
        return {"uptime_s": self.device_state.uptime_s(), "turns": len(controller.finished), "outcomes": outcomes,
                "config_changes": self.device_state.config_changes, "voice_loop": True}

    async def state(self) -> dict[str, Any]:
        return self.device_state.fields()

    async def apply_config(self, change: ConfigChange) -> None:
        self.device_state.apply_config(change)
        if self.stages is not None:
            await self.stages.configure(change.config)

    def state_changed(self) -> None:
        """The agent changed state (idle, listening, ...): report it."""
        self.device_state.publish()
