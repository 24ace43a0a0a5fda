"""Topic names for one device (DESIGN.md's MQTT layout), in one place so the device, the
operator CLI, the ACL file and Home Assistant discovery cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass

HA_STATUS = "homeassistant/status"
COMMANDS = ("say", "mute", "volume", "listen", "cancel", "restart", "ping", "stats", "update")


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
        """Where operators ask for MQTT 5 responses: inside the prefix, so the device's ACL allows it."""
        return f"{self.prefix}/reply"

    @property
    def ha_discovery(self) -> str:
        return f"homeassistant/device/{self.device_id}/config"

    def owns(self, topic: str) -> bool:
        """A concrete topic inside this device's prefix (no wildcards): safe to publish a reply to."""
        return topic.startswith(self.prefix + "/") and "+" not in topic and "#" not in topic


def device_of(topic: str, root: str) -> str | None:
    """``edgeagent/kitchen/state`` -> ``kitchen`` (None for topics outside ``root``)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != root:
        return None
    return parts[1]
