"""Home Assistant MQTT device discovery: one retained document per device that gives HA a
state sensor, last-turn latency, backend, a mute switch, a volume number, a restart button and
a "say" text entity, all reading ``{p}/state`` and writing ``{p}/cmd/*``; and an event entity
fed by ``{p}/intent`` (one event type per home-control intent) for automations to act on.

HA acts on a discovery document with its own (operator) rights, so a document must reference
only its own device: a device publishes it on ``{p}/discovery`` (its ACL allows nothing under
``homeassistant/``), and the relay (``discovery_relay``) republishes it for HA only when
``problems`` finds nothing wrong.
"""

from __future__ import annotations

from typing import Any

from edgeagent.fleet.topics import Topics

# HA's MQTT abbreviations and full names for topics end like this; "~" is the base topic
TOPIC_SUFFIXES = ("_t", "_topic")
ID_KEYS = ("unique_id", "uniq_id")


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


def _is_topic_key(key: str) -> bool:
    return key in ("~", "t", "topic") or key.endswith(TOPIC_SUFFIXES)


def problems(doc: Any, topics: Topics) -> list[str]:
    """Why HA must not get ``doc`` as ``topics.device_id``'s discovery: topics outside the device's
    prefix (HA would command or read another device), ids that claim another device's entities,
    device connections (HA merges devices by them).  Empty when it is fine."""
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    found: list[str] = []
    own, uid = topics.prefix + "/", f"edgeagent_{topics.device_id}"
    base = doc.get("~")
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            where = f"{path}.{key}" if path else key
            if _is_topic_key(key):
                topic = _expand(value, base) if key != "~" else value
                if not (isinstance(topic, str) and (topic.startswith(own) or topic == topics.prefix)
                        and "+" not in topic and "#" not in topic):
                    found.append(f"{where} = {str(topic)[:120]!r} is not a topic of {topics.device_id}")
            elif key in ID_KEYS and not (isinstance(value, str) and value.startswith(uid + "_")):
                found.append(f"{where} must start with {uid}_")
            elif key in ("ids", "identifiers") and path in ("dev", "device"):
                ids = value if isinstance(value, list) else [value]
                if not all(isinstance(i, str) and (i == uid or i.startswith(uid + "_")) for i in ids):
                    found.append(f"{where} must be {uid}")
            elif key in ("cns", "connections"):
                found.append(f"{where}: device connections are not allowed (HA would merge this with another device)")
            else:
                stack.append((where, value))
    return found


def _expand(value: Any, base: Any) -> Any:
    """HA's ``~`` abbreviation: at the start or the end of a topic it stands for the base topic."""
    if not isinstance(value, str) or not isinstance(base, str):
        return value
    if value.startswith("~"):
        return base + value[1:]
    if value.endswith("~"):
        return value[:-1] + base
    return value
