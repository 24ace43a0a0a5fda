"""Remote commands on ``{p}/cmd/{name}``: strict argument checks, then the DeviceControl.

Nothing here ever runs a shell or evaluates a payload: a command is looked up in a fixed
table, its JSON arguments (read by ``payload.load_json``: size, depth, text and numbers checked)
are checked against a fixed schema, and anything else becomes an error result naming what was
wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from edgeagent.fleet.control import CommandFailed, DeviceControl
from edgeagent.fleet.payload import PayloadError, load_json
from edgeagent.fleet.update import check_sha256, check_url

MAX_PAYLOAD = 4096  # bytes; a say text fits easily, a flood does not
MAX_DEPTH = 4  # arguments are flat: {"text": ...}; a little room for a wrong shape to get its own error
MAX_SAY_CHARS = 1000


class BadCommand(ValueError):
    """The request itself is wrong (unknown command, bad JSON, wrong types, too large)."""


@dataclass(frozen=True)
class Arg:
    kind: type | tuple[type, ...]
    check: Callable[[Any], str | None] = lambda _v: None  # returns why the value is wrong


def _text(v: str) -> str | None:
    if not v.strip():
        return "must not be empty"
    return f"longer than {MAX_SAY_CHARS} characters" if len(v) > MAX_SAY_CHARS else None


def _unit(v: float) -> str | None:
    ok = 0 <= v <= 1 and (not isinstance(v, float) or math.copysign(1.0, v) > 0)  # no NaN, no -0.0, any int size
    return None if ok else "must be between 0.0 and 1.0"


# name -> required arguments (every command also takes an optional string "id", echoed back)
SCHEMAS: dict[str, dict[str, Arg]] = {
    "say": {"text": Arg(str, _text)},
    "mute": {"mute": Arg(bool)},
    "volume": {"volume": Arg((int, float), _unit)},
    "listen": {},
    "cancel": {},
    "restart": {},
    "ping": {},
    "stats": {},
    "update": {"url": Arg(str, check_url), "sha256": Arg(str, check_sha256)},
}


def parse(name: str, payload: bytes) -> dict[str, Any]:
    """Checked arguments for command ``name``; raises BadCommand saying what and why."""
    if name not in SCHEMAS:
        shown = name[:64] if name.isprintable() else name[:64].encode("unicode_escape", "replace").decode()
        raise BadCommand(f"unknown command {shown!r} (known: {', '.join(SCHEMAS)})")
    if not payload.strip():
        args: Any = {}
    else:
        try:
            args = load_json(payload, max_bytes=MAX_PAYLOAD, max_depth=MAX_DEPTH)
        except PayloadError as exc:
            raise BadCommand(f"argument {exc.path!r} {exc.reason}" if exc.path else exc.reason) from None
    if not isinstance(args, dict):
        raise BadCommand(f"payload must be a JSON object, got {type(args).__name__}")
    schema = SCHEMAS[name]
    unknown = sorted(set(args) - set(schema) - {"id"})
    if unknown:
        raise BadCommand(f"unexpected argument {unknown[0][:64]!r} for {name} (takes: {', '.join(schema) or 'none'})")
    if "id" in args and not (isinstance(args["id"], str) and len(args["id"]) <= 64):
        raise BadCommand("'id' must be a string of at most 64 characters")
    for key, arg in schema.items():
        if key not in args:
            raise BadCommand(f"missing argument {key!r} for {name}")
        value = args[key]
        if not isinstance(value, arg.kind) or (isinstance(value, bool) and arg.kind is not bool):
            raise BadCommand(f"argument {key!r} must be {_kind_name(arg.kind)}, got {type(value).__name__}")
        why = arg.check(value)
        if why:
            raise BadCommand(f"argument {key!r} {why}")
    return args


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if kind is bool:
        return "true or false"
    if kind is str:
        return "a string"
    return "a number"


async def execute(name: str, args: dict[str, Any], control: DeviceControl,
                  extra: Callable[[str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a parsed command; ``extra(name)`` serves the link's own commands (ping, stats)."""
    if name == "say":
        return await control.say(args["text"])
    if name == "mute":
        return await control.set_mute(args["mute"])
    if name == "volume":
        return await control.set_volume(float(args["volume"]))
    if name == "listen":
        return await control.listen()
    if name == "cancel":
        return await control.cancel()
    if name == "restart":
        return await control.restart()
    if name == "update":
        return await control.update(args["url"], args["sha256"])
    if name in ("ping", "stats"):
        return await extra(name)
    raise BadCommand(f"unknown command {name!r}")  # parse() keeps us from getting here


def result(name: str, args: dict[str, Any] | None, *, error: str | None = None,
           fields: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"ok": error is None, "command": name[:64]}
    if args and isinstance(args.get("id"), str):
        body["id"] = args["id"]
    if error is not None:
        body["error"] = error
    else:
        body.update(fields or {})
    return json.dumps(body, default=str).encode()


__all__ = ["BadCommand", "CommandFailed", "MAX_PAYLOAD", "SCHEMAS", "execute", "parse", "result"]
