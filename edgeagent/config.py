"""Typed settings: defaults, then a TOML file, then ``EDGEAGENT_SECTION__KEY`` environment overrides.

Every value is checked against its dataclass type (``Literal`` for choices, ``metadata`` for
ranges) so a bad file fails at start-up with the key, the value and the reason, not in the
middle of a turn.  Secrets are marked in field metadata: they never appear in ``repr`` and
are redacted whenever the config is printed or published.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

ENV_PREFIX = "EDGEAGENT_"
REDACTED = "***"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = Path("/etc/edgeagent/config.toml")


class ConfigError(ValueError):
    """A setting is invalid; names the key, the offending value and why."""

    def __init__(self, key: str, value: Any, reason: str):
        self.key, self.value, self.reason = key, value, reason
        shown = REDACTED if _looks_secret(key) else repr(value)
        super().__init__(f"config key '{key}' = {shown}: {reason}")


def secret(default: str = "") -> Any:
    """A secret string: hidden from repr, redacted in dumps, loadable from ``<name>_file``."""
    return field(default=default, repr=False, metadata={"secret": True})


def bounded(default: float | int, lo: float | int, hi: float | int) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


def _looks_secret(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _SECRET_NAMES


@dataclass
class DeviceConfig:
    id: str = ""  # empty: derived from /etc/machine-id (or the host name)
    name: str = "edgeagent speaker"
    group: str = ""  # fleet group, e.g. "kitchen-floor-2" (`edgeagent fleet update --group`)


@dataclass
class PathsConfig:
    models_dir: str = ""  # empty: ./models in a checkout, /var/lib/edgeagent/models on a device
    state_dir: str = ""  # empty: $STATE_DIRECTORY (systemd), ./.state in a checkout, else ~/.local/state


@dataclass
class AudioConfig:
    frame_ms: Literal[10, 20] = 20
    input_device: str = ""  # name substring or index; empty: the system default
    output_device: str = ""
    output_rate: int = bounded(0, 0, 192000)  # 0: the device's default rate
    volume: float = bounded(0.8, 0.0, 1.0)


@dataclass
class WakeConfig:
    engine: Literal["microwakeword", "openwakeword"] = "microwakeword"
    models: list[str] = field(default_factory=lambda: ["okay_nabu"])
    threshold: float = bounded(0.0, 0.0, 1.0)  # 0: each model's own cutoff from its JSON metadata
    thresholds: dict[str, float] = field(default_factory=dict)  # per-model override
    trigger_frames: int = bounded(0, 0, 100)  # probabilities averaged; 0: the model's own window
    refractory_s: float = bounded(2.0, 0.0, 60.0)
    stop_word: str = ""  # model name active only while speaking; empty: none


@dataclass
class VadConfig:
    engine: Literal["webrtc", "silero"] = "webrtc"
    aggressiveness: int = bounded(2, 0, 3)  # webrtc
    threshold: float = bounded(0.5, 0.0, 1.0)  # silero
    min_speech_ms: int = bounded(120, 0, 5000)
    silence_ms: int = bounded(500, 100, 5000)
    # end of turn already after this much silence when the transcript so far is a complete sentence.
    # Off (0) by default: Whisper completes open phrases ("set a timer for" -> "Set a timer for it."),
    # which would cut off a user who pauses to think; and on 2 cores its decode is rarely ready in time.
    complete_silence_ms: int = bounded(0, 0, 5000)
    max_utterance_s: float = bounded(15.0, 1.0, 120.0)
    no_speech_timeout_s: float = bounded(5.0, 0.5, 60.0)
    preroll_ms: int = bounded(300, 0, 2000)


@dataclass
class SttConfig:
    engine: Literal["whisper", "pocketsphinx", "vosk"] = "whisper"
    vosk_model_dir: str = ""
    grammar: str = ""  # pocketsphinx: a .jsgf/.gram grammar, or a keyphrase list file; empty: free-form LM
    language: str = "en"
    speculate_after_ms: int = bounded(180, 0, 2000)  # whisper: decode once this much pause follows speech; 0: off
    partial_interval_s: float = bounded(1.0, 0.0, 10.0)  # whisper: background partial decodes; 0: none


@dataclass
class LlmConfig:
    cloud_base_url: str = ""  # empty: no cloud, always local
    cloud_model: str = "gpt-4o-mini"
    cloud_api_key: str = secret()
    cloud_api_key_file: str = ""
    request_timeout_s: float = bounded(10.0, 0.5, 300.0)
    first_token_deadline_s: float = bounded(1.5, 0.1, 60.0)
    local_enabled: bool = True
    local_model_path: str = ""  # empty: SmolLM2-135M-Instruct from the models directory
    local_threads: int = bounded(0, 0, 64)  # 0: one per core minus one
    max_tokens: int = bounded(160, 1, 4096)
    temperature: float = bounded(0.6, 0.0, 2.0)
    history_turns: int = bounded(6, 0, 100)
    system_prompt: str = (
        "You are a helpful voice assistant on a smart speaker. Answer in one to three short "
        "spoken sentences. No lists, no markdown, no emoji."
    )


@dataclass
class TtsConfig:
    engine: Literal["piper", "espeak"] = "piper"
    voice: str = ""  # piper .onnx path; empty: en_US-joe-medium from the models directory
    espeak_voice: str = "en-us"
    length_scale: float = bounded(1.0, 0.3, 3.0)  # >1 speaks slower
    volume: float = bounded(1.0, 0.0, 2.0)


@dataclass
class AgentConfig:
    follow_up_s: float = bounded(4.0, 0.0, 30.0)
    barge_in_vad: bool = True
    barge_in_min_speech_ms: int = bounded(300, 50, 3000)
    echo_cancel: bool = True


@dataclass
class MqttConfig:
    enabled: bool = False
    host: str = "localhost"
    port: int = bounded(1883, 1, 65535)
    username: str = ""
    password: str = secret()
    password_file: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = bounded(30, 5, 3600)
    topic_root: str = "edgeagent"


@dataclass
class TelemetryConfig:
    include_text: bool = False  # transcripts and replies leave the device only when true
    jsonl_path: str = ""  # empty: <state_dir>/turns.jsonl
    spool_max: int = bounded(10000, 10, 10_000_000)


@dataclass
class UpdateConfig:
    """Over-the-air updates of the OS image (edgeagent.ota; the fleet command ``update``)."""

    confirm_deadline_s: float = bounded(900.0, 60.0, 86400.0)  # new version READY + on the broker within this, else rollback
    reboot_request: str = "/run/edgeagent/reboot"  # the image's edgeagent-reboot.path reboots when this file appears
    rauc_conf: str = ""  # empty: RAUC's /etc/rauc/system.conf


@dataclass
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"


@dataclass
class Config:
    device: DeviceConfig = field(default_factory=DeviceConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    wake: WakeConfig = field(default_factory=WakeConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    stt: SttConfig = field(default_factory=SttConfig)
    llm: LlmConfig = field(default_factory=LlmConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    log: LogConfig = field(default_factory=LogConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)

    @property
    def models_dir(self) -> Path:
        return Path(self.paths.models_dir)

    @property
    def state_dir(self) -> Path:
        return Path(self.paths.state_dir)

    @property
    def device_id(self) -> str:
        return self.device.id


_SECRET_NAMES = {
    f.name
    for section in dataclasses.fields(Config)
    for f in dataclasses.fields(section.default_factory())  # type: ignore[misc]
    if f.metadata.get("secret")
}
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


# ---------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Build the config in force: defaults <- TOML file <- environment, then validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is not None:
        data = read_toml(Path(path))
    _merge(data, env_overrides(env))
    config = build_config(data)
    return resolve_runtime(config, env)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("<file>", str(path), "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("<file>", str(path), f"not valid TOML: {exc}") from None


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``EDGEAGENT_LLM__CLOUD_MODEL=x`` -> ``{"llm": {"cloud_model": "x"}}`` (values still strings)."""
    out: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[key] = _FromEnv(value)
    return out


def build_config(data: Mapping[str, Any]) -> Config:
    """Validate a nested mapping against the dataclasses; unknown keys are errors."""
    return _build(Config, data, "")


def apply_partial(config: Config, partial: Mapping[str, Any]) -> Config:
    """A new Config with ``partial`` merged over ``config``; raises ConfigError, changes nothing."""
    if not isinstance(partial, Mapping):
        raise ConfigError("<root>", partial, "expected a table of sections")
    data = to_dict(config, redact=False)
    _merge(data, partial)
    return build_config(data)


def to_dict(config: Any, redact: bool = True) -> dict[str, Any]:
    """Plain nested dict of the config; secrets become ``***`` when redacted (and set)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value, redact)
        elif redact and f.metadata.get("secret"):
            out[f.name] = REDACTED if value else ""
        else:
            out[f.name] = _copy(value)
    return out


def to_toml(config: Config, redact: bool = True) -> str:
    """TOML text of the config (for ``doctor --config``, persisted remote config, examples)."""
    lines: list[str] = []
    for section, values in to_dict(config, redact).items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def secret_values(config: Config) -> list[str]:
    """The secret strings in force, so log filters can scrub them from any text."""
    values = []
    for section in dataclasses.fields(config):
        sub = getattr(config, section.name)
        for f in dataclasses.fields(sub):
            if f.metadata.get("secret") and getattr(sub, f.name):
                values.append(getattr(sub, f.name))
    return values


# ---------------------------------------------------------------- runtime defaults


def resolve_runtime(config: Config, env: Mapping[str, str] | None = None) -> Config:
    """Fill in values that depend on the machine: device id, directories, secrets from files."""
    env = os.environ if env is None else env
    if not config.device.id:
        config.device.id = default_device_id()
    if not _DEVICE_ID_RE.match(config.device.id):
        raise ConfigError("device.id", config.device.id, "use 1-64 letters, digits, '-' or '_'")
    checkout = (REPO_ROOT / "models" / "manifest.toml").is_file()
    if not config.paths.models_dir:
        config.paths.models_dir = str(REPO_ROOT / "models") if checkout else "/var/lib/edgeagent/models"
    if not config.paths.state_dir:
        if env.get("STATE_DIRECTORY"):
            config.paths.state_dir = env["STATE_DIRECTORY"].split(":")[0]
        elif checkout:
            config.paths.state_dir = str(REPO_ROOT / ".state")
        else:
            config.paths.state_dir = str(Path.home() / ".local/state/edgeagent")
    _load_secret_files(config, env)
    return config


def default_device_id() -> str:
    try:
        machine_id = Path("/etc/machine-id").read_text().strip()
        if machine_id:
            return machine_id[:12]
    except OSError:
        pass
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:64] or "edgeagent"


def _load_secret_files(config: Config, env: Mapping[str, str]) -> None:
    """``x_file`` fills secret ``x`` when ``x`` is empty; systemd credentials are looked up too."""
    for section in dataclasses.fields(config):
        sub = getattr(config, section.name)
        for f in dataclasses.fields(sub):
            if not f.metadata.get("secret") or getattr(sub, f.name):
                continue
            key = f"{section.name}.{f.name}_file"
            file_name = getattr(sub, f.name + "_file", "")
            credential = Path(env.get("CREDENTIALS_DIRECTORY", "/nonexistent")) / f"{section.name}.{f.name}"
            if not file_name and credential.is_file():
                file_name = str(credential)
            if not file_name:
                continue
            try:
                setattr(sub, f.name, Path(file_name).read_text().strip())
            except OSError as exc:
                raise ConfigError(key, file_name, f"cannot read secret file: {exc.strerror}") from None


# ---------------------------------------------------------------- validation


class _FromEnv(str):
    """A string from the environment: parsed into the target type rather than type-checked."""


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "<root>", data, "expected a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(prefix + unknown[0], data[unknown[0]], f"unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for name, value in data.items():
        key, f, hint = prefix + name, fields[name], hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key + ".")
        else:
            kwargs[name] = _check(key, _coerce(key, value, hint), hint, f.metadata)
    return cls(**kwargs)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    if not isinstance(value, _FromEnv):
        return value
    text = str(value)
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int or (origin is Literal and all(isinstance(a, int) for a in typing.get_args(hint))):
            return int(text)
        if hint is float:
            return float(text)
        if origin is list:
            return json.loads(text) if text.lstrip().startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        if origin is dict:
            return json.loads(text)
    except ValueError:
        raise ConfigError(key, text, f"cannot parse as {_type_name(hint)}") from None
    return text


def _check(key: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices or isinstance(value, bool):
            raise ConfigError(key, value, f"must be one of {', '.join(map(repr, choices))}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(key, value, f"expected a list of {_type_name(item)}")
        return [_check(f"{key}[{i}]", v, item, {}) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, f"expected a table of {_type_name(item)}")
        return {str(k): _check(f"{key}.{k}", v, item, meta) for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(key, value, f"expected {_type_name(hint)}, got {type(value).__name__}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and not (lo <= value <= hi):
        raise ConfigError(key, value, f"must be between {lo} and {hi}")
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)
