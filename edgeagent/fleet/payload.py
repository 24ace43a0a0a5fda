"""Untrusted JSON from the broker (commands, desired config, discovery), read defensively.

Python's ``json`` recurses once per nesting level (RecursionError at ~1,000, a traceback instead of
an answer), accepts ``NaN``/``Infinity`` (not JSON: strict readers such as Home Assistant choke on
them when we echo them), turns ``1e999`` into infinity, keeps the last of duplicate keys (other
readers keep the first) and lets lone surrogates and control characters through (they fail later,
far from the message, e.g. as UnicodeEncodeError in the speech engine).  ``load_json`` checks size
and depth before parsing and everything else right after, and says what was wrong without ever
quoting the payload: it may hold a secret.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# a JSON string (with escapes) or a bracket: strings are skipped whole so brackets inside them don't count
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
TEXT_CONTROLS_ALLOWED = "\n\t"  # in values (a system prompt has lines); never in keys


class PayloadError(ValueError):
    """What is wrong with a payload; ``path`` (``text``, ``wake.thresholds``) says where, if known."""

    def __init__(self, reason: str, path: str = ""):
        self.reason, self.path = reason, path
        super().__init__(f"{path}: {reason}" if path else reason)


def nesting_depth(payload: bytes) -> int:
    """Deepest bracket nesting, without parsing (strings skipped); linear, no recursion."""
    depth = deepest = 0
    for token in _TOKENS.finditer(payload):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def text_problem(text: str, allow: str = TEXT_CONTROLS_ALLOWED) -> str | None:
    """Why ``text`` cannot be accepted (a lone surrogate, a control character), or None."""
    for char in text:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return f"contains a lone surrogate (U+{code:04X})"
        if (code < 0x20 or 0x7F <= code <= 0x9F) and char not in allow:
            return f"contains a control character (U+{code:04X})"
    return None


def load_json(payload: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """The parsed payload, or PayloadError naming the first problem (size, depth, syntax, text, numbers)."""
    if len(payload) > max_bytes:
        raise PayloadError(f"payload too large: {len(payload)} bytes (max {max_bytes})")
    if nesting_depth(payload) > max_depth:
        raise PayloadError(f"JSON nested deeper than {max_depth} levels")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"not valid JSON: not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except PayloadError:
        raise
    except ValueError:  # an integer beyond Python's 4,300-digit conversion limit
        raise PayloadError("not valid JSON: a number with too many digits") from None
    _check_values(value, "")
    return value


def _no_constant(name: str) -> Any:
    raise PayloadError(f"not valid JSON: {name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        why = text_problem(key, allow="")
        if why:
            raise PayloadError(f"a key {why}")
        if key in out:
            raise PayloadError(f"duplicate key {key[:64]!r}")
        out[key] = value
    return out


def _check_values(value: Any, path: str) -> None:
    """Strings must be text, numbers finite; iterative (no recursion), depth is already bounded."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            why = text_problem(item)
            if why:
                raise PayloadError(why, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise PayloadError("number out of range (not finite)", where)
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}" if where else k) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
