"""Remote config: the retained ``{p}/config/desired`` partial, validated, applied, persisted,
and reported back (secrets redacted) on ``{p}/config/reported``.

The desired document is a *whole* desired state over the local base config (file +
environment): applying it again is a no-op and removing a key reverts it.  It is read as untrusted
input (``payload.load_json``), may carry only the keys of ``remote_policy.REMOTE_KEYS``, and is
applied whole or not at all; errors name the key and the rule, never the value.  The last valid
one is kept on disk (``shadow.Shadow``) so the device boots into it without a broker, together
with the last one known to reach the broker, to roll back to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgeagent.config import REDACTED, Config, ConfigError, apply_partial, looks_secret, to_dict
from edgeagent.fleet.payload import PayloadError, load_json
from edgeagent.fleet.remote_policy import check_remote
from edgeagent.fleet.shadow import EMPTY, MAX_UNCONFIRMED_STARTS, Rollback, Shadow, fingerprint
from edgeagent.turn.trace import utc_now_iso

log = logging.getLogger(__name__)

# Keys pushed into the running daemon (Stages.configure); every other change needs a clean
# restart (a model to reload, a device to reopen, a file to move).
LIVE_KEYS = (
    "device.name", "device.timezone", "audio.volume", "wake.threshold", "wake.thresholds", "wake.trigger_frames",
    "wake.refractory_s", "vad.threshold", "vad.min_speech_ms", "vad.silence_ms", "vad.complete_silence_ms",
    "vad.incomplete_silence_ms", "vad.open_silence_ms", "vad.turn_threshold", "vad.max_utterance_s",
    "vad.no_speech_timeout_s", "vad.preroll_ms", "llm.cloud_", "llm.request_timeout_s",
    "llm.first_token_deadline_s", "llm.max_tokens", "llm.temperature", "llm.history_turns", "llm.system_prompt",
    "tts.length_scale", "tts.volume", "agent.follow_up_s", "agent.barge_in_min_speech_ms", "agent.speculative_reply",
    "telemetry.include_text", "log.", "intents.",
)
MAX_DESIRED_BYTES = 64 * 1024
MAX_DESIRED_DEPTH = 8  # section, key, and a little room (thresholds is a table of numbers)


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


class RemoteConfig:
    """The config in force = the local base + the accepted desired document.  ``starting`` (the
    device's link at start-up) counts a start with an unconfirmed document and rolls back after
    ``MAX_UNCONFIRMED_STARTS`` (a document the device keeps failing to start with)."""

    def __init__(self, base: Config, state_dir: Path, *, starting: bool = False):
        self.base = base
        self.current = base
        self.shadow = Shadow(Path(state_dir) / "fleet")
        self.path = self.shadow.desired_path
        self.document = EMPTY  # the accepted desired document in force
        self.last_error: dict[str, Any] | None = None
        self.last_change: ConfigChange | None = None
        self.updated_at: str | None = None
        if starting and not self.shadow.confirmed():
            starts = self.shadow.count_start()
            if starts > MAX_UNCONFIRMED_STARTS:
                self._roll_back(self.shadow.desired() or EMPTY, f"{starts - 1} starts in a row without reaching the broker")
        self._load_persisted()
        self.started_with, self.started = self.document, self.current
        self._reached = False

    def _load_persisted(self) -> None:
        payload = self.shadow.desired()
        if payload is None:
            return
        try:
            self.current, self.document = self._validate(payload), payload
        except ConfigError as exc:  # e.g. written by a version that allowed more: same rules as over MQTT
            self._reject(exc, "persisted document refused")
            try:
                self.current, self.document = self._validate(self.shadow.good()), self.shadow.good()
            except ConfigError:
                pass

    def _validate(self, payload: bytes) -> Config:
        try:
            desired = load_json(payload, max_bytes=MAX_DESIRED_BYTES, max_depth=MAX_DESIRED_DEPTH)
        except PayloadError as exc:
            raise ConfigError.unshown(exc.path or "<payload>", exc.reason) from None
        check_remote(desired, self.base)
        return apply_partial(self.base, desired)

    def handle(self, payload: bytes) -> ConfigChange | None:
        """Apply a desired document; None (and ``last_error`` set) when rejected."""
        payload = payload if payload.strip() else EMPTY
        try:
            rollback = self.shadow.rollback
            if rollback is not None and self.shadow.refuses(payload):
                raise ConfigError.unshown("<payload>", f"rolled back at {rollback.at} ({rollback.reason}); "
                                                       "publish a changed document to try again")
            new = self._validate(payload)
        except ConfigError as exc:
            self._reject(exc, "remote config rejected")
            return None
        changed = diff(self.current, new)
        self.shadow.save_desired(payload)
        self.current, self.document = new, payload
        self.last_error = None
        self.updated_at = utc_now_iso()
        self.last_change = ConfigChange(new, changed, tuple(k for k in changed if needs_restart(k)))
        if changed:
            log.info("remote config applied: %s", ", ".join(changed))
        return self.last_change

    def _reject(self, exc: ConfigError, what: str) -> None:
        """Key and rule only: the value may be a secret typed into the wrong key."""
        key, reason = exc.key[:200], exc.reason[:300]
        message = f"config key '{key}': {reason}"
        self.last_error = {"key": key, "reason": reason, "message": message, "at": utc_now_iso()}
        log.warning("%s: %s", what, message)

    # ------------------------------------------------------------ last known good

    @property
    def unconfirmed(self) -> bool:
        """Started with a document that has not reached the broker yet (the rollback timer runs)."""
        return fingerprint(self.started_with) != fingerprint(self.shadow.good())

    def reached_broker(self) -> None:
        """Connected: what this process started with is good, and so is the document in force once
        nothing in it waits for a restart (until then the last good one stays)."""
        if not [k for k in diff(self.started, self.current) if needs_restart(k)]:
            self.shadow.confirm(self.document)
        elif not self._reached:
            self.shadow.confirm(self.started_with)
        self._reached = True

    def roll_back(self, reason: str) -> None:
        """The document this process started with kept it off the broker: back to the last good one
        (in force after the restart the caller does next)."""
        self._roll_back(self.started_with, reason)

    def _roll_back(self, refused: bytes, reason: str) -> None:
        keys: list[str] = []
        try:
            keys = list(diff(self._validate(self.shadow.good()), self._validate(refused)))
        except ConfigError:
            pass
        self.shadow.roll_back(Rollback(at=utc_now_iso(), reason=reason, keys=keys, document=fingerprint(refused)))
        log.error("remote config rolled back to the last good document (%s): %s", reason, ", ".join(keys) or "-")

    def report(self) -> dict[str, Any]:
        change, rollback = self.last_change, self.shadow.rollback
        return {
            "config": to_dict(self.current, redact=True),
            "desired": _redacted(json.loads(self.document)),
            "changed": list(change.changed) if change else [],
            "restart_required": list(change.restart_required) if change else [],
            "applied_at": self.updated_at,
            "last_error": self.last_error,
            "rollback": asdict(rollback) if rollback else None,
            "redacted": REDACTED,
        }


def _redacted(document: Any) -> Any:
    """The accepted document as reported: it cannot hold secrets (they are local-only), and if an
    old one did, they stay on the device."""
    if not isinstance(document, dict):
        return {}
    return {section: {k: (REDACTED if looks_secret(k) else v) for k, v in values.items()} if isinstance(values, dict)
            else values for section, values in document.items()}
