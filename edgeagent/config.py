"""Typed settings: defaults, then a TOML file, then ``EDGEAGENT_SECTION__KEY`` environment overrides.

Every value is checked against its dataclass type (``Literal`` for choices, ``metadata`` for
ranges) so a bad file fails at start-up with the key, the value and the reason, not in the
middle of a turn.  Secrets are marked in field metadata: they never appear in ``repr`` and
are redacted whenever the config is printed or published.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from edgeagent.llm.endpoint import origin, url_problem

ENV_PREFIX = "EDGEAGENT_"
REDACTED = "***"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = Path("/etc/edgeagent/config.toml")


_UNSHOWN = object()


class ConfigError(ValueError):
    """A setting is invalid; names the key, the offending value and why.  The value is left out for
    secrets and for unknown keys (a misspelled secret is still a secret)."""

    def __init__(self, key: str, value: Any, reason: str):
        self.key, self.value, self.reason = key, value, reason
        if value is _UNSHOWN:
            super().__init__(f"config key '{key}': {reason}")
        else:
            shown = REDACTED if looks_secret(key) else repr(value)
            super().__init__(f"config key '{key}' = {shown}: {reason}")

    @classmethod
    def unshown(cls, key: str, reason: str) -> "ConfigError":
        """An error that never shows the value (unknown keys, anything from the network)."""
        return cls(key, _UNSHOWN, reason)


def secret(default: str = "") -> Any:
    """A secret string: hidden from repr, redacted in dumps, loadable from ``<name>_file``."""
    return field(default=default, repr=False, metadata={"secret": True})


def bounded(default: float | int, lo: float | int, hi: float | int) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


def checked(default: str, check: Any) -> Any:
    """A string with its own rule: ``check(value)`` says why it is wrong, or None."""
    return field(default=default, metadata={"check": check})


MAX_CUSTOM_INTENTS, MAX_SENTENCES, MAX_SENTENCE_CHARS = 50, 20, 200
_INTENT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def check_timezone(name: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("device.timezone", name, "not an IANA time zone name (e.g. 'Europe/Berlin')") from None


def check_sentences(sentences: Mapping[str, list[str]]) -> None:
    """Operator intents: bounded in number and size, named like identifiers, valid hassil templates."""
    if not sentences:
        return
    from edgeagent.intents.templates import BUILTIN_INTENTS, TemplateError, check_template

    if len(sentences) > MAX_CUSTOM_INTENTS:
        raise ConfigError("intents.sentences", f"{len(sentences)} intents", f"at most {MAX_CUSTOM_INTENTS}")
    for name, templates in sentences.items():
        key = f"intents.sentences.{name}"
        if not _INTENT_NAME_RE.match(name) or name in BUILTIN_INTENTS:
            raise ConfigError(key, name, "name intents with a letter then letters, digits or '_' (not a built-in)")
        if not 1 <= len(templates) <= MAX_SENTENCES:
            raise ConfigError(key, templates, f"give 1 to {MAX_SENTENCES} sentences")
        for template in templates:
            if len(template) > MAX_SENTENCE_CHARS:
                raise ConfigError(key, template[:40] + "...", f"longer than {MAX_SENTENCE_CHARS} characters")
            try:
                check_template(template)
            except TemplateError as exc:
                raise ConfigError(key, template, str(exc)) from None


def looks_secret(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _SECRET_NAMES


@dataclass
class DeviceConfig:
    id: str = ""  # empty: derived from /etc/machine-id (or the host name)
    name: str = "edgeagent speaker"
    group: str = ""  # fleet group, e.g. "kitchen-floor-2" (`edgeagent fleet update --group`)
    timezone: str = ""  # IANA name ("Europe/Berlin") for the time, date and alarms; empty: the system's

    def __post_init__(self) -> None:
        if self.timezone:
            check_timezone(self.timezone)


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
    # alexa: on voices, rooms and noise it was not tuned on, microWakeWord's alexa misses ~4 % at its
    # calibrated threshold where okay_nabu misses ~50 % (benchmarks/eval.py, README "Accuracy")
    models: list[str] = field(default_factory=lambda: ["alexa"])
    threshold: float = bounded(0.0, 0.0, 1.0)  # 0: each model's calibrated threshold (ear/wake.py), else its own cutoff
    thresholds: dict[str, float] = field(default_factory=dict, metadata={"min": 0.0, "max": 1.0})  # per-model override
    trigger_frames: int = bounded(0, 0, 100)  # probabilities averaged; 0: the model's own window
    refractory_s: float = bounded(2.0, 0.0, 60.0)
    stop_word: str = ""  # model name active only while speaking; empty: none


@dataclass
class VadConfig:
    engine: Literal["webrtc", "silero"] = "webrtc"
    aggressiveness: int = bounded(2, 0, 3)  # webrtc
    threshold: float = bounded(0.5, 0.0, 1.0)  # silero
    min_speech_ms: int = bounded(120, 0, 5000)
    silence_ms: int = bounded(500, 100, 5000)  # end of turn after this much silence, without an end-of-turn model
    # smart-turn (pipecat's v3.2) hears whether the talker sounds finished; "none": silence_ms alone
    turn_model: Literal["smart-turn", "none"] = "smart-turn"
    turn_threshold: float = bounded(0.5, 0.0, 1.0)  # its P(finished) above which a pause ends the turn early
    # with the model: end after complete_silence_ms when it says finished and the pause's transcript does
    # not leave the sentence open; after open_silence_ms when the transcript does ("set a timer for");
    # otherwise (the model hears an unfinished turn) after incomplete_silence_ms
    complete_silence_ms: int = bounded(300, 100, 5000)
    incomplete_silence_ms: int = bounded(800, 100, 5000)
    open_silence_ms: int = bounded(1500, 100, 5000)
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
    beam_size: int = bounded(5, 1, 10)  # whisper: beam search width
    # WebRTC noise suppression + gain control on what the endpointer and STT hear (the wake word hears
    # the raw microphone): Whisper's WER 0.344 -> 0.298 on the evaluation's tune half (ear/clean.py)
    clean_audio: bool = True
    whisper_model: Literal["tiny.en", "base"] = "tiny.en"  # base: optional package pair (models/manifest.toml)
    # whisper: text the decoder takes as what came before: the device's own words (wake word, names,
    # "timer", "volume") bias it towards them; empty: none
    prompt: str = ""
    # whisper: utterances up to this long are encoded on this window, not Whisper's 30 s (~5x faster);
    # below ~8 s Whisper repeats itself; 0: always 30 s
    window_s: float = bounded(10.0, 0.0, 30.0)


@dataclass
class LlmConfig:
    cloud_base_url: str = checked("", url_problem)  # empty: no cloud, always local
    # where a fleet may move cloud_base_url (local only): host names, *.suffix, or full origins for http
    cloud_allowed_hosts: list[str] = field(default_factory=list)
    cloud_model: str = "gpt-4o-mini"
    cloud_api_key: str = secret()
    cloud_api_key_file: str = ""
    # the only origin the key is ever sent to; empty: the origin of the local cloud_base_url
    cloud_api_key_origin: str = ""
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
    # hibari: first audio ~10x sooner than piper (and Whisper hears it as well); piper joe stays selectable
    engine: Literal["hibari", "piper", "espeak"] = "hibari"
    voice: str = ""  # piper .onnx path; empty: en_US-joe-medium from the models directory (hibari: its one voice)
    espeak_voice: str = "en-us"
    length_scale: float = bounded(1.0, 0.3, 3.0)  # >1 speaks slower
    volume: float = bounded(1.0, 0.0, 2.0)


@dataclass
class AgentConfig:
    follow_up_s: float = bounded(4.0, 0.0, 30.0)
    barge_in_vad: bool = True
    # voice over the reply (140 ms of it speech to Silero) that stops it; it ducks after 40 ms of voice
    barge_in_min_speech_ms: int = bounded(200, 50, 3000)
    echo_cancel: bool = True
    # start the reply to what STT decoded of a pause before the end of turn is decided, held silent
    # until it is (and the final transcript is the same); a discarded one is never heard
    speculative_reply: bool = True


DEFAULT_AREAS = ["living room", "kitchen", "bedroom", "bathroom", "office", "hallway", "dining room", "garage",
                 "garden", "basement", "kids room", "guest room", "laundry room", "porch"]


@dataclass
class IntentsConfig:
    """Sentences matched before the LLM (edgeagent.intents): built-in skills and home control."""

    enabled: bool = True
    fuzzy_cutoff: int = bounded(80, 50, 100)  # a misheard word is replaced by a known one this similar; 100: off
    room: str = ""  # this speaker's area: "turn on the lights" then means the lights here
    areas: list[str] = field(default_factory=lambda: list(DEFAULT_AREAS))  # rooms home commands may name
    # devices and scenes home commands may name: "tv" (a switch), "light:reading lamp", "scene:movie night"
    names: list[str] = field(default_factory=list)
    sentences: dict[str, list[str]] = field(default_factory=dict)  # operator intents: name -> hassil templates
    confirm_timeout_s: float = bounded(2.0, 0.1, 30.0)  # how long a home command waits for its MQTT 5 response
    max_timers: int = bounded(20, 1, 100)
    ring_s: float = bounded(300.0, 5.0, 3600.0)  # a finished timer rings this long unless stopped

    def __post_init__(self) -> None:
        check_sentences(self.sentences)
        for key, values in (("intents.areas", self.areas), ("intents.names", self.names)):
            if len(values) > 500 or any(not v.strip() or len(v) > 60 for v in values):
                raise ConfigError(key, values, "at most 500 entries of 1-60 characters")


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
    # a remote config the device started with but could not reach the broker with for this long is
    # rolled back to the last one that did (and so is one it failed to start with three times)
    rollback_after_s: int = bounded(300, 2, 86400)


@dataclass
class TelemetryConfig:
    include_text: bool = False  # transcripts and replies leave the device only when true
    jsonl_path: str = ""  # empty: <state_dir>/turns.jsonl
    spool_max: int = bounded(10000, 10, 10_000_000)


@dataclass
class UiConfig:
    """The kiosk's screen (edgeagent.ui): a local page of state, captions and controls."""

    enabled: bool = False  # serve the page
    listen: str = "127.0.0.1"  # loopback: the device's own screen only; another address exposes it
    port: int = bounded(8088, 1, 65535)
    # needed for the controls (mute, volume, tap to speak) from anywhere but the device itself
    token: str = secret()
    token_file: str = ""
    kiosk: bool = False  # also show the page full screen on the device's display (implies enabled)


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
    intents: IntentsConfig = field(default_factory=IntentsConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)

    @property
    def models_dir(self) -> Path:
        return Path(self.paths.models_dir)

    @property
    def state_dir(self) -> Path:
        return Path(self.paths.state_dir)


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
    if config.llm.cloud_api_key and not config.llm.cloud_api_key_origin:
        config.llm.cloud_api_key_origin = origin(config.llm.cloud_base_url)  # the key belongs to that host
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
        raise ConfigError.unshown(prefix + unknown[0], f"unknown key (known: {', '.join(fields)})")
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
        if abs(value) > 2**53:
            raise ConfigError(key, value, "number out of range")
        value = float(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise ConfigError(key, value, f"expected {_type_name(hint)}, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, value, "must be a finite number")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and not (lo <= value <= hi):
        raise ConfigError(key, value, f"must be between {lo} and {hi}")
    if lo is not None and lo >= 0 and isinstance(value, float) and math.copysign(1.0, value) < 0:
        raise ConfigError(key, value, f"must be between {lo} and {hi} (not negative zero)")
    why = meta["check"](value) if "check" in meta else None
    if why:
        raise ConfigError(key, value, why)
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
