"""``edgeagent fleet devices|tail|stats|send|config|discovery|collect``: the operator's view of the fleet
over MQTT, and the collector that stores it in a database (edgeagent.fleetserver).

Every payload a device sends is untrusted (its login may be stolen): anything malformed becomes a
warning naming the device (from the topic, which the broker's ACL binds to the login), and the rest
of the output still comes; device text is escaped before it reaches the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from edgeagent.cli.fleet_server import DB_ENV, add_collect_parser, db_summary, run_collect


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fleet", help="operate devices over MQTT: devices, tail, stats, send, config, collect, update",
                            description="Broker options default to $EDGEAGENT_FLEET_<OPTION> "
                                        "(e.g. EDGEAGENT_FLEET_HOST, EDGEAGENT_FLEET_PASSWORD), then to the "
                                        "config's [mqtt] section.")
    conn = parser.add_argument_group("broker")
    conn.add_argument("--host")
    conn.add_argument("--port", type=int)
    conn.add_argument("--username")
    conn.add_argument("--password-file", help="file holding the password (or $EDGEAGENT_FLEET_PASSWORD)")
    conn.add_argument("--tls", action="store_true", default=None)
    conn.add_argument("--ca-file")
    conn.add_argument("--cert-file")
    conn.add_argument("--key-file")
    conn.add_argument("--topic-root")
    conn.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the broker or a device")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    devices = actions.add_parser("devices", help="every device: online, version, state, last seen")
    devices.add_argument("--wait", type=float, default=1.0, help="seconds to collect retained state")
    tail = actions.add_parser("tail", help="live turn traces (one line each; --json for JSON lines)")
    tail.add_argument("--device", help="only this device")
    tail.add_argument("--count", type=int, help="exit after this many traces")
    tail.add_argument("--duration", type=float, help="exit after this many seconds")
    tail.add_argument("--output", help="also append each trace as a JSON line to this file (a collector)")
    tail.add_argument("--session", help="named persistent session: the broker keeps traces while tail is away")
    stats = actions.add_parser("stats", help="P50/P90 per stage, per device and fleet-wide")
    stats.add_argument("--input", action="append", metavar="FILE", help="JSON-lines traces (from tail --json/--output); repeatable; - = stdin")
    stats.add_argument("--listen", type=float, metavar="SECONDS", help="collect live traces for this long (default 10 s without --input)")
    stats.add_argument("--window", help="only turns started within this window, e.g. 15m, 24h, 7d")
    stats.add_argument("--device", help="only this device")
    stats.add_argument("--session", help="persistent session to collect from (see tail --session)")
    stats.add_argument("--db", help="read the turns stored by `fleet collect` (sqlite:///path or postgresql://...; "
                                    "default $EDGEAGENT_FLEET_DB when neither --input nor --listen is given)")
    send = actions.add_parser("send", help="send a command and print the device's answer")
    send.add_argument("device")
    send.add_argument("command", help="say, mute, volume, listen, cancel, restart, ping, stats")
    send.add_argument("args", nargs="?", default="{}", help='JSON arguments, e.g. \'{"volume": 0.5}\'')
    config = actions.add_parser("config", help="set desired config keys (retained) and wait for the device's report")
    config.add_argument("device")
    config.add_argument("settings", nargs="+", metavar="KEY=VALUE", help="e.g. vad.silence_ms=600 (values parsed as JSON, else text)")
    config.add_argument("--replace", action="store_true", help="replace the whole desired document instead of merging")
    actions.add_parser("discovery", help="relay devices' Home Assistant discovery to HA, each checked to reference "
                                         "only its own device's topics (runs until stopped)")
    add_collect_parser(actions)
    update = actions.add_parser("update", help="roll out a signed OS update bundle (RAUC), canaries first",
                                description="Each device downloads the bundle, checks it, installs it into its "
                                            "inactive slot, reboots when idle and reports back; a device whose new "
                                            "version does not come up rolls back by itself.")
    update.add_argument("targets", nargs="+", metavar="DEVICE|URL", help="[DEVICE ...] URL: devices (or --all/--group), then the bundle's URL (options before or after these, not between)")
    update.add_argument("--all", action="store_true", help="every device that is online")
    update.add_argument("--group", help="every online device whose config has device.group = GROUP")
    update.add_argument("--canary", metavar="N%", help="update this share first; stop if any of them fails")
    update.add_argument("--sha256", help="the bundle's sha256 (default: computed from URL)")
    update.add_argument("--wait", type=float, default=3600.0, help="seconds each wave may take (default 3600)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from edgeagent.cli import config_from_args
    from edgeagent.fleet.operator import FleetError, OperatorClient, broker_settings

    flags = {name: getattr(args, name) for name in ("host", "port", "username", "password_file", "tls",
                                                      "ca_file", "cert_file", "key_file", "topic_root")}
    try:
        settings = broker_settings(config_from_args(args).mqtt, flags)
        if args.action == "collect":
            return run_collect(args, settings)
        if args.action == "stats" and args.listen is None and (args.input or args.db or os.environ.get(DB_ENV)):
            return _stats(args, None)
        with OperatorClient(settings, args.timeout, getattr(args, "session", None)) as client:
            return ACTIONS[args.action](args, client)
    except FleetError as exc:
        print(f"edgeagent fleet: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"edgeagent fleet: {exc}", file=sys.stderr)
        return 2


class Warnings:
    """One stderr line per device and problem, however often the device repeats it."""

    def __init__(self) -> None:
        self._said: set[tuple[str, str]] = set()

    def __call__(self, device: str, problem: str) -> None:
        from edgeagent.fleet.operator import shown

        if (device, problem) not in self._said:
            self._said.add((device, problem))
            print(f"edgeagent fleet: warning: {shown(device)}: {problem}", file=sys.stderr, flush=True)


def _kind(value: Any) -> str:
    return "not JSON" if value is None else f"a JSON {type(value).__name__}"


def _devices(args: argparse.Namespace, client: Any) -> int:
    from edgeagent.fleet.operator import device_json, shown
    from edgeagent.fleet.topics import device_of
    from edgeagent.cli.table import print_table

    root = client.root
    warn = Warnings()
    client.subscribe(f"{root}/+/status", f"{root}/+/state")
    found: dict[str, dict[str, Any]] = {}
    for msg in client.messages_for(args.wait):
        device = device_of(msg.topic, root)
        if device is None:
            continue
        entry = found.setdefault(device, {"device": device, "status": "unknown"})
        if msg.topic.endswith("/status"):
            entry["status"] = shown(msg.payload.decode(errors="replace"), 20)
        else:
            state = device_json(msg.payload)
            if not isinstance(state, dict):
                warn(device, f"its state is {_kind(state)}, not a JSON object; listed without it")
                continue
            entry.update(state=state.get("state"), version=state.get("version"), backend=state.get("backend"),
                         mute=state.get("mute"), volume=state.get("volume"), last_seen=state.get("updated_at"),
                         last_turn_ms=state.get("last_turn_ms"), image=(state.get("image") or {}).get("version"),
                         update=(state.get("update") or {}).get("status"))
    rows = sorted(found.values(), key=lambda d: d["device"])
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    cols = ["device", "status", "state", "version", "image", "backend", "mute", "volume", "last_turn_ms", "last_seen", "update"]
    print_table(cols, [[_cell(r.get(c)) for c in cols] for r in rows])
    print(f"\n{sum(r['status'] == 'online' for r in rows)}/{len(rows)} devices online")
    return 0


def _traces(client: Any, seconds: float | None, warn: Warnings) -> Any:
    """(sender, trace) for each turn trace that arrives; the sender is the device of the topic (the
    broker binds it to the login), and a trace naming another device is shown as its sender's."""
    from edgeagent.fleet.operator import device_json
    from edgeagent.fleet.topics import device_of

    for msg in client.messages_for(seconds):
        device = device_of(msg.topic, client.root) or "?"
        trace = device_json(msg.payload)
        if not isinstance(trace, dict) or not isinstance(trace.get("turn_id"), str):
            warn(device, f"a telemetry message that is {_kind(trace) if not isinstance(trace, dict) else 'a JSON object without a turn_id'}, skipped")
            continue
        if trace.get("device_id") != device:
            warn(device, "a trace whose device_id is not its sender's: counted as its sender's")
            trace["device_id"] = device
        yield device, trace


def _tail(args: argparse.Namespace, client: Any) -> int:
    device = args.device or "+"
    topic = f"{client.root}/{device}/telemetry/turn"
    client.subscribe(topic)
    print(f"tail: listening on {topic}", file=sys.stderr, flush=True)
    warn = Warnings()
    seen: set[tuple[str, str]] = set()
    out = open(args.output, "a", encoding="utf-8") if args.output else None
    try:
        for sender, trace in _traces(client, args.duration, warn):
            key = (sender, trace["turn_id"])
            if key in seen:  # a QoS 1 duplicate
                continue
            seen.add(key)
            line = json.dumps(trace, separators=(",", ":"))
            if out:
                out.write(line + "\n")
                out.flush()
            print(line if args.json else _trace_line(trace, lambda what: warn(sender, what)), flush=True)
            if args.count and len(seen) >= args.count:
                break
    finally:
        if out:
            out.close()
    return 0


def _trace_line(t: dict[str, Any], warn: Any = lambda what: None) -> str:
    from edgeagent.fleet.operator import shown

    def ms(name: str) -> str:
        value = t.get(name)
        if value is None:
            return "-"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{value:.0f}ms"
        warn(f"{name} is not a number")
        return "?"

    fields = [shown(t.get("started_at", "?"), 40), shown(t.get("device_id", "?"), 64), shown(t.get("outcome", "?"), 20),
              f"backend={shown(t.get('llm_backend'), 20)}", f"ttfa={ms('ttfa_ms')}", f"stt={ms('end_of_speech_to_final_ms')}",
              f"llm_ttft={ms('llm_ttft_ms')}", f"tts={ms('tts_first_chunk_ms')}"]
    if t.get("barge_in"):
        fields.append(f"barge_in_stop={ms('barge_in_stop_ms')}")
    if t.get("error"):
        fields.append(f"error={shown(t['error'], 200)}")
    return "  ".join(fields)


def _stats(args: argparse.Namespace, client: Any) -> int:
    from edgeagent.fleet.stats import parse_window, read_jsonl, summarize

    window = parse_window(args.window) if args.window else None
    if client is None and not args.input:
        return _print_summary(args, db_summary(args.db, window, args.device), window, from_db=True)
    if args.db:
        raise ValueError("--db reads stored turns; it does not combine with --input or --listen")
    traces: list[Any] = []
    if args.input:
        traces.append(read_jsonl(args.input))
    if client is not None:
        client.subscribe(f"{client.root}/{args.device or '+'}/telemetry/turn")
        live = [trace for _sender, trace in _traces(client, args.listen if args.listen is not None else 10.0, Warnings())]
        traces.append(live)
    return _print_summary(args, summarize((t for source in traces for t in source), window, args.device), window)


def _print_summary(args: argparse.Namespace, summary: Any, window: Any, from_db: bool = False) -> int:
    from edgeagent.cli.table import print_table

    if args.json:
        print(json.dumps({"turns": summary.turns, "devices": summary.devices, "duplicates": summary.duplicates,
                          "outside_window": summary.outside_window,
                          "stages": [s.__dict__ for s in summary.stages]}, indent=1))
        return 0
    print_table(["device", "stage", "n", "p50_ms", "p90_ms"],
                [[s.device, s.stage, s.n, s.p50, s.p90] for s in summary.stages])
    notes = ([] if from_db else [f"{summary.duplicates} duplicates ignored"]) + \
        ([f"{summary.outside_window} outside the window"] if window else [])
    print(f"\n{summary.turns} turns from {summary.devices} devices" + (f" ({', '.join(notes)})" if notes else ""))
    return 0


def _send(args: argparse.Namespace, client: Any) -> int:
    try:
        payload = json.loads(args.args)
    except ValueError as exc:
        raise ValueError(f"arguments are not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("arguments must be a JSON object")
    from edgeagent.fleet.operator import shown

    answer = client.request(args.device, args.command, payload, args.timeout)
    if args.json:
        print(json.dumps(answer))
    elif answer.get("ok") is True:
        extra = {k: v for k, v in answer.items() if k not in ("ok", "command")}
        print(f"{args.device} {args.command}: ok" + (f" {json.dumps(extra)}" if extra else ""))
    else:
        print(f"{args.device} {args.command}: error: {shown(answer.get('error'), 300)}", file=sys.stderr)
    return 0 if answer.get("ok") is True else 1


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``["vad.silence_ms=600", "llm.cloud_model=gpt"]`` -> nested partial config."""
    partial: dict[str, Any] = {}
    for number, item in enumerate(items, 1):
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:  # the value is never shown: it may be a secret typed in the wrong place
            shown = repr(key[:64]) if sep else f"setting {number}"
            raise ValueError(f"{shown}: expected section.key=value, e.g. vad.silence_ms=600")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        section, _, name = key.partition(".")
        partial.setdefault(section, {})[name] = value
    return partial


def _merge_base(client: Any, device: str, warn: Warnings) -> dict[str, Any]:
    """What a merge starts from: the retained desired document, unless the device rejected it; then
    the one it applied (its report says which), so an old mistake never blocks later merges."""
    from edgeagent.fleet.operator import device_json, shown

    topics = client.topics(device)
    current = device_json(client.retained(topics.config_desired) or b"{}")
    report = device_json(client.retained(topics.config_reported, wait=0.5) or b"{}")
    error = report.get("last_error") if isinstance(report, dict) else None
    if error and isinstance(report.get("desired"), dict):  # type: ignore[union-attr]
        message = error.get("message") if isinstance(error, dict) else error
        warn(device, f"it rejected its retained desired config ({shown(message, 200)}); "
                     "merging over the config it applied instead")
        return dict(report["desired"])  # type: ignore[index]
    if not isinstance(current, dict):
        warn(device, f"its retained desired config is {_kind(current)}, not a JSON object; starting from an empty one")
        return {}
    return current


def _config(args: argparse.Namespace, client: Any) -> int:
    from edgeagent.fleet.operator import device_json, shown

    topics = client.topics(args.device)
    update = parse_settings(args.settings)
    warn = Warnings()
    desired = {} if args.replace else _merge_base(client, args.device, warn)
    for section, values in update.items():
        if not isinstance(desired.get(section), dict):
            desired[section] = {}
        desired[section].update(values)
    client.subscribe(topics.config_reported)  # the old report arrives flagged retained: skipped below
    client.publish(topics.config_desired, json.dumps(desired), retain=True)
    for msg in client.messages_for(args.timeout):
        if msg.topic != topics.config_reported or msg.retain:
            continue
        report = device_json(msg.payload)
        if not isinstance(report, dict):
            warn(args.device, f"its config report is {_kind(report)}, not a JSON object; ignored")
            continue
        error = report.get("last_error")
        if args.json:
            print(json.dumps(report))
        elif error:
            print(f"{args.device}: rejected: {shown(error.get('message') if isinstance(error, dict) else error, 300)}",
                  file=sys.stderr)
        else:
            keys = lambda name: [shown(k, 64) for k in report.get(name) or [] if isinstance(k, str)]  # noqa: E731
            restart = keys("restart_required")
            print(f"{args.device}: applied: {', '.join(keys('changed')) or 'no change'}"
                  + (f" (restart needed for {', '.join(restart)})" if restart else ""))
        return 1 if error else 0
    print(f"edgeagent fleet: {args.device} did not report within {args.timeout:g} s (offline?); "
          "the desired config is retained and applies when it connects", file=sys.stderr)
    return 1


def _update(args: argparse.Namespace, client: Any) -> int:
    from edgeagent.fleet import rollout
    from edgeagent.cli.table import print_table

    *devices, url = args.targets
    if bool(devices) == bool(args.all or args.group):
        raise ValueError("name devices, or use --all or --group (not both)")
    canary = rollout.parse_canary(args.canary)
    sha256 = (args.sha256 or "").lower() or rollout.bundle_sha256(url)
    offline: list[str] = []
    if not devices:
        devices, offline = rollout.fleet_devices(client, 2.0, args.group)
        if offline:
            print(f"offline, not updated: {', '.join(offline)}", file=sys.stderr)
        if not devices:
            raise ValueError("no online device" + (f" in group {args.group!r}" if args.group else ""))
    print(f"update {len(devices)} device(s) to {url} (sha256 {sha256})", flush=True)
    results = rollout.rollout(client, devices, url, sha256, canary, args.wait)
    if args.json:
        print(json.dumps([r.__dict__ for r in results], default=str))
    else:
        print()
        print_table(["device", "result", "version", "seconds", "detail"], rollout.summary_rows(results))
    return 0 if all(r.result == "updated" for r in results) and not offline else 1


def _cell(value: Any) -> str:
    from edgeagent.fleet.operator import shown

    return "-" if value is None else shown(value, 40)


def _discovery(args: argparse.Namespace, client: Any) -> int:
    import signal
    import threading

    from edgeagent.fleet.discovery_relay import DiscoveryRelay

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_a: stop.set())
    DiscoveryRelay(client).run(stop)
    return 0


ACTIONS = {"devices": _devices, "tail": _tail, "stats": _stats, "send": _send, "config": _config,
           "discovery": _discovery, "update": _update}
