"""Topic names for one device (DESIGN.md's MQTT layout), in one place so the device, the
operator CLI, the ACL file and Home Assistant discovery cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

HA_STATUS = "homeassistant/status"
COMMANDS = ("say", "mute", "volume", "listen", "cancel", "restart", "ping", "stats", "update")
MAX_TOPIC = 256


@dataclass(frozen=True)
class Topics:
    root: str
    device_id: str

    @property
    def prefix(self) -> str:
        return f"{self.root}/{self.device_id}"

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def telemetry(self) -> str:
        return f"{self.prefix}/telemetry/turn"

    @property
    def config_desired(self) -> str:
        return f"{self.prefix}/config/desired"

    @property
    def config_reported(self) -> str:
        return f"{self.prefix}/config/reported"

    @property
    def commands(self) -> str:
        """Subscription filter for every command (one level: results under ``/result`` don't match)."""
        return f"{self.prefix}/cmd/+"

    def command(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}"

    def command_result(self, name: str) -> str:
        return f"{self.prefix}/cmd/{name}/result"

    @property
    def replies(self) -> str:
        """Where operators ask for MQTT 5 responses: inside the prefix, so the device's ACL allows it,
        and apart from every topic the device itself reads or publishes."""
        return f"{self.prefix}/reply"

    def reply_problem(self, topic: str) -> str | None:
        """Why the device must not answer on ``topic`` (a requester's MQTT 5 response topic), or None.
        Anywhere else in the prefix a reply would be read back as config, a command, or state."""
        inside = topic.startswith(self.replies + "/") and len(topic) > len(self.replies) + 1
        if inside and len(topic) <= MAX_TOPIC and topic.isprintable() and "+" not in topic and "#" not in topic:
            return None
        return f"response topic must lie under {self.replies}/ (at most {MAX_TOPIC} characters, no wildcards)"

    @property
    def discovery(self) -> str:
        """The device's own Home Assistant discovery document; the relay (discovery_relay) checks it
        and republishes it on ``ha_discovery``, which devices may not write."""
        return f"{self.prefix}/discovery"

    @property
    def intent(self) -> str:
        """Recognised home-control intents (JSON events for Home Assistant or any fleet backend)."""
        return f"{self.prefix}/intent"

    @property
    def intent_response(self) -> str:
        """Where a handler confirms an intent (MQTT 5 response topic of every ``intent`` event)."""
        return f"{self.prefix}/intent/response"

    @property
    def ha_discovery(self) -> str:
        return f"homeassistant/device/{self.device_id}/config"


def device_of(topic: str, root: str) -> str | None:
    """``edgeagent/kitchen/state`` -> ``kitchen`` (None for topics outside ``root``)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != root:
        return None
    return parts[1]
