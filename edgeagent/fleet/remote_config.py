"""Remote config: the retained ``{p}/config/desired`` partial, validated, applied, persisted,
and reported back (secrets redacted) on ``{p}/config/reported``.

The desired document is a *whole* desired state over the local base config (file +
environment): applying it again is a no-op and removing a key reverts it.  The last valid one
is kept in ``<state_dir>/fleet/desired.json`` so the device boots into it without a broker.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.config import REDACTED, Config, ConfigError, apply_partial, to_dict
from edgeagent.trace import utc_now_iso

log = logging.getLogger(__name__)

# Keys pushed into the running daemon (edgeagent.live_config); every other change needs a clean
# restart (a model to reload, a device to reopen, a file to move).
LIVE_KEYS = (
    "device.name", "audio.volume", "wake.threshold", "wake.thresholds", "wake.trigger_frames",
    "wake.refractory_s", "vad.threshold", "vad.min_speech_ms", "vad.silence_ms", "vad.complete_silence_ms",
    "vad.max_utterance_s",
    "vad.no_speech_timeout_s", "vad.preroll_ms", "llm.cloud_", "llm.request_timeout_s",
    "llm.first_token_deadline_s", "llm.max_tokens", "llm.temperature", "llm.history_turns", "llm.system_prompt",
    "tts.length_scale", "tts.volume", "agent.follow_up_s", "agent.barge_in_min_speech_ms",
    "telemetry.include_text", "log.",
)
MAX_DESIRED_BYTES = 64 * 1024
LOCAL_ONLY = (("device", "id"), ("paths", None), ("mqtt", "topic_root"), ("update", "reboot_request"),
              ("update", "rauc_conf"))


@dataclass(frozen=True)
class ConfigChange:
    """A valid desired config: the new Config and which dotted keys changed / need a restart."""

    config: Config
    changed: tuple[str, ...]
    restart_required: tuple[str, ...]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and not prefix:  # sections only; dict-valued settings stay whole
            out.update(flatten(value, key + "."))
        else:
            out[prefix + key] = value
    return out


def diff(old: Config, new: Config) -> tuple[str, ...]:
    a, b = flatten(to_dict(old, redact=False)), flatten(to_dict(new, redact=False))
    return tuple(sorted(k for k in b if a.get(k) != b[k]))


def needs_restart(key: str) -> bool:
    return not any(key == live or (live.endswith((".", "_")) and key.startswith(live)) for live in LIVE_KEYS)


def _check_remote_keys(desired: Any) -> None:
    """The device's identity and directories are local facts: a broker must not move them."""
    if not isinstance(desired, dict):
        return  # apply_partial names the problem
    for section, key in LOCAL_ONLY:
        values = desired.get(section)
        if isinstance(values, dict) and (key is None or key in values):
            name = f"{section}.{key}" if key else section
            raise ConfigError(name, values.get(key) if key else values, "can only be set in the local config")


class RemoteConfig:
    def __init__(self, base: Config, state_dir: Path):
        self.base = base
        self.current = base
        self.path = Path(state_dir) / "fleet" / "desired.json"
        self.last_error: dict[str, Any] | None = None
        self.last_change: ConfigChange | None = None
        self.updated_at: str | None = None
        self._load_persisted()

    def _load_persisted(self) -> None:
        try:
            desired = json.loads(self.path.read_bytes())
            self.current = apply_partial(self.base, desired)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:  # ConfigError is a ValueError too
            log.warning("remote config: ignoring persisted %s: %s", self.path, exc)

    def handle(self, payload: bytes) -> ConfigChange | None:
        """Apply a desired document; None (and ``last_error`` set) when rejected."""
        try:
            if len(payload) > MAX_DESIRED_BYTES:
                raise ConfigError("<payload>", f"{len(payload)} bytes", f"larger than {MAX_DESIRED_BYTES} bytes")
            try:
                desired = json.loads(payload) if payload.strip() else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                # the value shown is the size, never the text: a broken document may hold a secret
                raise ConfigError("<payload>", f"{len(payload)} bytes", f"not valid JSON: {exc}") from None
            _check_remote_keys(desired)
            new = apply_partial(self.base, desired)
        except ConfigError as exc:
            message = str(exc)[:500]  # a 60 KB value must not flood the report or the journal
            self.last_error = {"key": exc.key[:200], "reason": exc.reason[:300], "message": message, "at": utc_now_iso()}
            log.warning("remote config rejected: %s", message)
            return None
        changed = diff(self.current, new)
        self._persist(payload if payload.strip() else b"{}")
        self.current = new
        self.last_error = None
        self.updated_at = utc_now_iso()
        self.last_change = ConfigChange(new, changed, tuple(k for k in changed if needs_restart(k)))
        if changed:
            log.info("remote config applied: %s", ", ".join(changed))
        return self.last_change

    def report(self) -> dict[str, Any]:
        change = self.last_change
        return {
            "config": to_dict(self.current, redact=True),
            "changed": list(change.changed) if change else [],
            "restart_required": list(change.restart_required) if change else [],
            "applied_at": self.updated_at,
            "last_error": self.last_error,
            "redacted": REDACTED,
        }

    def _persist(self, payload: bytes) -> None:
        """Write + fsync + rename, owner-only: the desired document may carry a secret."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
