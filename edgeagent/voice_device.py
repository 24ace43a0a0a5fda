"""Remote commands (fleet ``say``, ``mute``, ``volume``, ``listen``, ``cancel``, …) on the live voice loop.

Extends the fleet's stand-alone device (real mute/volume/config state) with the turn
controller, so every command acts on the agent that is actually running.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgeagent.agent import TurnController
from edgeagent.events import AgentState
from edgeagent.fleet.control import CommandFailed
from edgeagent.fleet.device import StandaloneDevice
from edgeagent.fleet.remote_config import ConfigChange
from edgeagent.live_config import apply_live

if TYPE_CHECKING:
    from edgeagent.daemon import Stages


class VoiceDevice(StandaloneDevice):
    controller: TurnController | None = None
    stages: Stages | None = None

    def attach_controller(self, controller: TurnController, stages: Stages) -> None:
        self.controller, self.stages = controller, stages
        self._apply_audio()

    def _loop(self) -> TurnController:
        if self.controller is None:
            raise CommandFailed("the voice loop is still starting")
        return self.controller

    def _state_fields(self) -> dict[str, Any]:
        controller = self.controller
        last = controller.finished[-1] if controller and controller.finished else None
        return {"state": controller.state.value if controller else "starting", "voice_loop": controller is not None,
                "mute": self.muted, "volume": self.volume, "backend": last.llm_backend if last else None,
                "last_turn_ms": last.ttfa_ms if last else None,
                "degraded": dict(self.stages.degraded) if self.stages else {}}

    def is_idle(self) -> bool:
        controller = self.controller
        return controller is not None and controller.state == AgentState.IDLE and controller.turn is None

    def _apply_audio(self) -> None:
        if self.controller is not None:
            self.controller.muted = self.muted
            self.controller.responder.speaker.volume = self.volume

    def _changed(self) -> None:
        self._apply_audio()
        super()._changed()

    async def say(self, text: str) -> dict[str, Any]:
        if not self._loop().announce(text):
            raise CommandFailed(f"busy: the agent is {self._loop().state.value}")
        return {"speaking": True}

    async def listen(self) -> dict[str, Any]:
        controller = self._loop()
        if controller.state != AgentState.IDLE or self.muted:
            raise CommandFailed("muted" if self.muted else f"busy: the agent is {controller.state.value}")
        controller.listen()
        return {"listening": True}

    async def cancel(self) -> dict[str, Any]:
        controller = self._loop()
        if controller.turn is None:
            return {"cancelled": False, "reason": "no turn in progress"}
        controller.cancel()
        return {"cancelled": True}

    async def stats(self) -> dict[str, Any]:
        controller = self._loop()
        outcomes: dict[str, int] = {}
        for trace in controller.finished:
            outcomes[trace.outcome] = outcomes.get(trace.outcome, 0) + 1
        return {"uptime_s": round(time.monotonic() - self._started, 1), "turns": len(controller.finished),
                "outcomes": outcomes, "config_changes": self.config_changes, "voice_loop": True}

    async def apply_config(self, change: ConfigChange) -> None:
        await super().apply_config(change)
        if self.controller is not None and self.stages is not None:
            await apply_live(change.config, self.controller, self.stages)
