"""What a fleet may change remotely: an allow-list of config keys (DESIGN.md's trust model).

An operator may change behaviour (wake, VAD, voice, prompt, volume) remotely, never where the
device connects (``mqtt.*``), which files it reads or writes (paths, model files, grammars), or
its secrets: those come from local provisioning.  Every key a remote document may carry is listed
here, by pattern, with the extra rule it needs (a model *name*, not a path; a cloud endpoint
within the locally allowed hosts).  A new section that is safe to change remotely (intents, say)
is one more line in ``REMOTE_KEYS``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from edgeagent.config import Config, ConfigError
from edgeagent.llm.endpoint import remote_endpoint_problem

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a model, voice or language name: never a path
LOCAL_ONLY = "can only be set in the device's local config (connection, files and secrets are provisioned locally)"

Check = Callable[[str, Any, Config], None]  # raises ConfigError(key, reason) naming the rule


def _name(key: str, value: Any, _base: Config) -> None:
    if isinstance(value, str) and value and not NAME.match(value):
        raise ConfigError.unshown(key, "must be a name (letters, digits, '_', '-', '.'), not a path")


def _names(key: str, value: Any, base: Config) -> None:
    items = value.items() if isinstance(value, Mapping) else enumerate(value) if isinstance(value, list) else ()
    for index, item in items:
        if isinstance(value, Mapping):
            _name(f"{key}.{index}" if NAME.match(str(index)) else key, str(index), base)
        else:
            _name(f"{key}[{index}]", item, base)


def _endpoint(key: str, value: Any, base: Config) -> None:
    if value == base.llm.cloud_base_url:  # back to what the device was provisioned with
        return
    why = remote_endpoint_problem(value, base.llm.cloud_allowed_hosts) if isinstance(value, str) else None
    if why:
        raise ConfigError.unshown(key, why)


@dataclass(frozen=True)
class RemoteKey:
    """``section.key`` or ``section.*``; ``check`` adds a rule beyond the config's own types and ranges."""

    pattern: str
    check: Check | None = None

    def matches(self, key: str) -> bool:
        section, _, name = self.pattern.partition(".")
        return key == self.pattern or (name == "*" and key.startswith(section + "."))


REMOTE_KEYS: tuple[RemoteKey, ...] = (
    RemoteKey("device.name"), RemoteKey("device.timezone"), RemoteKey("device.group", _name),
    RemoteKey("audio.volume"),
    RemoteKey("wake.engine"), RemoteKey("wake.models", _names), RemoteKey("wake.threshold"),
    RemoteKey("wake.thresholds", _names), RemoteKey("wake.trigger_frames"), RemoteKey("wake.refractory_s"),
    RemoteKey("wake.stop_word", _name),
    RemoteKey("vad.*"),
    RemoteKey("stt.engine"), RemoteKey("stt.language", _name), RemoteKey("stt.speculate_after_ms"),
    RemoteKey("stt.partial_interval_s"),
    RemoteKey("llm.cloud_base_url", _endpoint), RemoteKey("llm.cloud_model"), RemoteKey("llm.request_timeout_s"),
    RemoteKey("llm.first_token_deadline_s"), RemoteKey("llm.local_enabled"), RemoteKey("llm.local_threads"),
    RemoteKey("llm.max_tokens"), RemoteKey("llm.temperature"), RemoteKey("llm.history_turns"),
    RemoteKey("llm.system_prompt"),
    RemoteKey("tts.engine"), RemoteKey("tts.espeak_voice", _name), RemoteKey("tts.length_scale"), RemoteKey("tts.volume"),
    RemoteKey("agent.*"),
    RemoteKey("telemetry.include_text"),
    RemoteKey("log.level"),
    RemoteKey("intents.*"),  # sentences, rooms and names matched before the LLM (issue 16)
    RemoteKey("update.confirm_deadline_s"),  # the files it touches (update.reboot_request, rauc_conf) stay local
)


def _known_keys() -> set[str]:
    return {f"{section.name}.{f.name}" for section in dataclasses.fields(Config)
            for f in dataclasses.fields(section.default_factory())}  # type: ignore[misc]


KNOWN_KEYS = _known_keys()


def check_remote(desired: Any, base: Config) -> None:
    """Raise ConfigError for the first key a fleet may not set (or may not set to this value).
    Unknown keys and wrong shapes are left to ``apply_partial``, which names them."""
    if not isinstance(desired, Mapping):
        return
    for section, values in desired.items():
        if not isinstance(values, Mapping):
            continue
        for name, value in values.items():
            key = f"{section}.{name}"
            if key not in KNOWN_KEYS:
                continue
            rule = next((r for r in REMOTE_KEYS if r.matches(key)), None)
            if rule is None:
                raise ConfigError.unshown(key, LOCAL_ONLY)
            if rule.check is not None:
                rule.check(key, value, base)
