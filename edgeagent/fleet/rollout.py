"""``edgeagent fleet update``: roll an OS update bundle out to devices, canaries first.

Each device gets the command ``update {"url", "sha256"}`` and reports its progress in the
``update`` field of its retained state (``downloading 40 %``, ``installing``, ``rebooting``, then
``updated to V`` or ``update failed: REASON``).  With ``--canary N%`` a share of the devices is
updated first; if any of them fails or does not come back in time, the rollout stops there and
the other devices are never asked.
"""

from __future__ import annotations

import hashlib
import json
import math
import queue
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edgeagent.fleet.operator import FleetError, OperatorClient, device_json, shown
from edgeagent.fleet.topics import device_of

DONE = ("updated", "failed")


@dataclass
class DeviceRollout:
    device: str
    result: str = "pending"  # updated | failed | timeout | refused | pending
    detail: str = ""
    version: str | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float | None = None
    last_status: str = ""


def parse_canary(text: str | None) -> float | None:
    """``"20%"`` / ``"20"`` -> 20.0 (percent of the devices updated first)."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not match or not 0 < float(match.group(1)) <= 100:
        raise ValueError(f"--canary {text!r}: expected a share such as 10%")
    return float(match.group(1))


def canary_split(devices: list[str], percent: float | None) -> tuple[list[str], list[str]]:
    """The first ``ceil(percent %)`` devices (at least one), and the rest."""
    if percent is None:
        return [], list(devices)
    count = max(1, math.ceil(len(devices) * percent / 100))
    return devices[:count], devices[count:]


def bundle_sha256(url: str, timeout: float = 60.0) -> str:
    """sha256 of the bundle at ``url`` (the operator's own download, so devices can check theirs)."""
    import httpx

    digest = hashlib.sha256()
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise FleetError(f"{url}: HTTP {response.status_code}")
            for block in response.iter_bytes(1 << 20):
                digest.update(block)
    except httpx.HTTPError as exc:
        raise FleetError(f"cannot fetch {url}: {exc}") from None
    return digest.hexdigest()


def fleet_devices(client: OperatorClient, wait: float, group: str | None = None) -> tuple[list[str], list[str]]:
    """(online devices, offline ones) from the retained status and state, in ``group`` if given."""
    root = client.root
    client.subscribe(f"{root}/+/status", f"{root}/+/state")
    status: dict[str, str] = {}
    groups: dict[str, str | None] = {}
    for msg in client.messages_for(wait):
        device = device_of(msg.topic, root)
        if device is None:
            continue
        if msg.topic.endswith("/status"):
            status[device] = msg.payload.decode(errors="replace")
        elif msg.topic.endswith("/state"):
            groups[device] = _field(device_json(msg.payload), "group")
            status.setdefault(device, "unknown")
    chosen = sorted(d for d in status if group is None or groups.get(d) == group)
    return [d for d in chosen if status[d] == "online"], [d for d in chosen if status[d] != "online"]


def run_wave(client: OperatorClient, devices: Iterable[str], url: str, sha256: str, timeout: float,
             out=sys.stdout, answer_timeout: float = 30.0) -> list[DeviceRollout]:
    """Send the command to every device of the wave, then follow their state until each is done.
    Answers and state share one loop, so a device that fails at once is not missed."""
    root = client.root
    client.subscribe(f"{root}/+/state")
    wave = {d: DeviceRollout(d) for d in devices}
    token = uuid.uuid4().hex[:12]
    replies: dict[str, str] = {}
    for device in wave:
        topics = client.topics(device)
        replies[f"{topics.replies}/{token}"] = device
        client.subscribe(f"{topics.replies}/{token}")
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{topics.replies}/{token}"
        props.CorrelationData = token.encode()
        client.client.publish(topics.command("update"), json.dumps({"url": url, "sha256": sha256}), qos=1,
                              properties=props)
    sent = time.monotonic()
    deadline = sent + timeout
    unanswered, pending = set(wave), set(wave)
    while pending and time.monotonic() < deadline:
        if unanswered and time.monotonic() - sent > answer_timeout:
            for device in unanswered:
                _finish(wave[device], "refused", f"no answer within {answer_timeout:.0f} s (offline?)", out)
            pending -= unanswered
            unanswered = set()
        try:
            msg = client.messages.get(timeout=1.0)
        except queue.Empty:
            continue
        if msg.topic in replies:
            device = replies[msg.topic]
            answer = device_json(msg.payload)
            unanswered.discard(device)
            if _field(answer, "ok") is not True:
                _finish(wave[device], "refused", shown(_field(answer, "error") or "not an answer"), out)
                pending.discard(device)
            else:
                print(f"{device}: accepted (running {shown(_field(answer, 'from') or 'an unknown version')})", file=out,
                      flush=True)
            continue
        device = device_of(msg.topic, root)
        if device not in pending or msg.retain or not msg.topic.endswith("/state"):
            continue  # a retained message is from before the command
        state = device_json(msg.payload)
        update = _field(state, "update")
        if _field(update, "sha256") != sha256:
            continue  # another update's, or not a state at all (whatever a device sends, we carry on)
        entry = wave[device]
        status = shown(_field(update, "status") or "", 200)
        if status != entry.last_status and not _same_step(status, entry.last_status):
            print(f"{device}: {status}", file=out, flush=True)
        entry.last_status = status
        if _field(update, "phase") in DONE:
            entry.result = update["phase"]
            entry.detail = shown(_field(update, "reason") or status, 200)
            version = _field(_field(state, "image"), "version")
            entry.version = shown(version) if version else None
            entry.seconds = round(time.monotonic() - entry.started, 1)
            pending.discard(device)
    for device in pending:
        entry = wave[device]
        _finish(entry, "timeout", f"no outcome within {timeout:.0f} s (last: {entry.last_status or 'nothing'})", out)
    return list(wave.values())


def _field(value: object, key: str) -> Any:
    """``value[key]`` of a device's JSON object; None for anything else."""
    return value.get(key) if isinstance(value, dict) else None


def _finish(entry: DeviceRollout, result: str, detail: str, out) -> None:
    entry.result, entry.detail = result, detail
    entry.seconds = round(time.monotonic() - entry.started, 1)
    print(f"{entry.device}: {result}: {detail}", file=out, flush=True)


def _same_step(new: str, old: str) -> bool:
    """``downloading 41 %`` after ``downloading 40 %``: not worth a line (one per 10 %)."""
    pattern = re.compile(r"^(.*?)(\d+) %")
    a, b = pattern.match(new), pattern.match(old)
    return bool(a and b and a.group(1) == b.group(1) and int(a.group(2)) // 10 == int(b.group(2)) // 10)


def rollout(client: OperatorClient, devices: list[str], url: str, sha256: str, canary: float | None,
            timeout: float, out=sys.stdout) -> list[DeviceRollout]:
    """Canary wave, then (only if every canary updated) the rest."""
    first, rest = canary_split(devices, canary)
    results: list[DeviceRollout] = []
    if first:
        print(f"canary: {', '.join(first)} ({len(first)} of {len(devices)})", file=out, flush=True)
        results = run_wave(client, first, url, sha256, timeout, out)
        failed = [r for r in results if r.result != "updated"]
        if failed:
            print(f"canary failed ({', '.join(f'{r.device}: {r.result}' for r in failed)}): rollout stopped, "
                  f"{len(rest)} device(s) not updated", file=out, flush=True)
            return results + [DeviceRollout(d, "skipped", "canary failed") for d in rest]
    if rest:
        results += run_wave(client, rest, url, sha256, timeout, out)
    return results


def summary_rows(results: list[DeviceRollout]) -> list[list[Any]]:
    return [[r.device, r.result, r.version or "-", "-" if r.seconds is None else r.seconds, r.detail] for r in results]
