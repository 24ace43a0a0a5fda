"""Home Assistant MQTT device discovery: one retained document per device that gives HA a
state sensor, last-turn latency, backend, a mute switch, a volume number, a restart button and
a "say" text entity, all reading ``{p}/state`` and writing ``{p}/cmd/*``; and an event entity
fed by ``{p}/intent`` (one event type per home-control intent) for automations to act on."""

from __future__ import annotations

from typing import Any

from edgeagent.fleet.topics import Topics


def discovery_payload(topics: Topics, device_name: str, version: str,
                      intent_names: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    uid = f"edgeagent_{topics.device_id}"

    def entity(platform: str, key: str, name: str, **extra: Any) -> dict[str, Any]:
        return {"p": platform, "name": name, "unique_id": f"{uid}_{key}", **extra}

    return {
        "dev": {"ids": [uid], "name": device_name, "mf": "edgeagent", "mdl": "voice agent", "sw": version},
        "o": {"name": "edgeagent", "sw": version},
        "avty_t": topics.status,
        "pl_avail": "online",
        "pl_not_avail": "offline",
        "stat_t": topics.state,
        "qos": 1,
        "cmps": {
            "state": entity("sensor", "state", "State", val_tpl="{{ value_json.state }}"),
            "latency": entity("sensor", "latency", "Last turn latency", unit_of_meas="ms",
                              dev_cla="duration", val_tpl="{{ value_json.last_turn_ms }}"),
            "backend": entity("sensor", "backend", "LLM backend", val_tpl="{{ value_json.backend }}"),
            "mute": entity("switch", "mute", "Mute", cmd_t=topics.command("mute"),
                           pl_on='{"mute": true}', pl_off='{"mute": false}', stat_on="ON", stat_off="OFF",
                           val_tpl="{{ 'ON' if value_json.mute else 'OFF' }}"),
            "volume": entity("number", "volume", "Volume", cmd_t=topics.command("volume"),
                             cmd_tpl='{"volume": {{ value }}}', min=0.0, max=1.0, step=0.05,
                             val_tpl="{{ value_json.volume }}"),
            "restart": entity("button", "restart", "Restart", cmd_t=topics.command("restart"), pl_prs="{}"),
            "say": entity("text", "say", "Say", cmd_t=topics.command("say"),
                          cmd_tpl='{"text": {{ value | tojson }}}', max=255),
            **({"intent": entity("event", "intent", "Voice command", stat_t=topics.intent, evt_typ=list(intent_names))}
               if intent_names else {}),
        },
    }
