"""``edgeagent doctor``: every piece the daemon needs, checked, with what to do about each miss."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable, Literal

from edgeagent.config import Config

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    area: str
    item: str
    level: Level
    detail: str


CheckFn = Callable[[Config], Iterable[Check]]

# package import name -> (pip distribution, why it matters, required?)
PACKAGES = {
    "numpy": ("numpy", "audio buffers", True),
    "soxr": ("soxr", "resampling", True),
    "soundfile": ("soundfile", "WAV input/output", True),
    "paho.mqtt": ("paho-mqtt", "fleet link", True),
    "pyaudio": ("pyaudio", "microphone and speaker (apt portaudio19-dev)", False),
    "webrtcvad": ("webrtcvad-wheels", "WebRTC VAD", False),
    "onnxruntime": ("onnxruntime", "Silero VAD, smart-turn, hibari and piper", False),
    "pymicro_wakeword": ("pymicro-wakeword", "microWakeWord features", False),
    "pyopen_wakeword": ("pyopen-wakeword", "openWakeWord models", False),
    "pocketsphinx": ("pocketsphinx", "pocketsphinx STT", False),
    "vosk": ("vosk", "vosk STT", False),
    "faster_whisper": ("faster-whisper", "Whisper STT", False),
    "hibari": ("hibari-tts", "hibari TTS (the default voice)", False),
    "piper": ("piper-tts", "piper TTS", False),
    "xllamacpp": ("xllamacpp", "embedded LLM (llama.cpp, prebuilt)", False),
    "pywebrtc_audio": ("pywebrtc-audio", "echo cancellation for barge-in", False),
    "systemd": ("systemd-python", "journald + sd_notify (apt libsystemd-dev)", False),
}


def check_packages(_config: Config) -> Iterable[Check]:
    for module, (dist, why, required) in PACKAGES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            yield Check("package", dist, "ok", why)
        else:
            yield Check("package", dist, "fail" if required else "warn", f"missing ({why}): pip install {dist}")


def check_tflite_runtime(_config: Config) -> Iterable[Check]:
    """The wake word needs a TFLite interpreter; say which one is in use (they differ on numpy 2)."""
    for module, dist in (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime")):
        try:
            importlib.import_module(module)
        except Exception as exc:  # tflite-runtime fails at import on numpy 2
            if not isinstance(exc, ModuleNotFoundError):
                yield Check("runtime", dist, "warn", f"installed but unusable: {exc}")
            continue
        yield Check("runtime", "tflite interpreter", "ok", f"using {dist}")
        return
    yield Check("runtime", "tflite interpreter", "fail", "no TFLite runtime: pip install ai-edge-litert")


def check_binaries(_config: Config) -> Iterable[Check]:
    for binary, why in (("espeak-ng", "fallback TTS and piper phonemes"), ("mosquitto", "local broker for tests")):
        path = shutil.which(binary)
        yield Check("binary", binary, "ok" if path else "warn", path or f"missing ({why}): apt install {binary}")


def check_audio(config: Config) -> Iterable[Check]:
    try:
        from edgeagent.audio.base import AudioError
        from edgeagent.audio.pyaudio_io import find_device
    except ImportError as exc:
        yield Check("audio", "pyaudio", "fail", str(exc))
        return
    for direction, spec in (("input", config.audio.input_device), ("output", config.audio.output_device)):
        try:
            device = find_device(spec, direction)
            yield Check("audio", direction, "ok", f"{device.index}: {device.name} ({device.default_rate} Hz)")
        except AudioError as exc:
            yield Check("audio", direction, "fail",
                        f"{exc}. Plug in a USB mic/speaker or set audio.{direction}_device; "
                        "without one use --input/--output WAV files")
        except Exception as exc:  # PortAudio itself failing to initialise
            yield Check("audio", direction, "fail", f"PortAudio error: {exc}")


def check_models(config: Config) -> Iterable[Check]:
    from edgeagent.modelstore import ModelError, load_manifest, model_status

    try:
        manifest = load_manifest()
    except ModelError as exc:
        yield Check("model", "manifest", "fail", str(exc))
        return
    for entry in manifest:
        status = model_status(entry, config.models_dir)
        level: Level = "ok" if status.state == "ok" else ("warn" if entry.optional else "fail")
        yield Check("model", entry.name, level, status.detail or str(entry.installed_path(config.models_dir)))


def check_broker(config: Config) -> Iterable[Check]:
    if not config.mqtt.enabled:
        yield Check("network", "mqtt broker", "ok", "fleet link disabled (mqtt.enabled = false)")
        return
    target = f"{config.mqtt.host}:{config.mqtt.port}"
    try:
        with socket.create_connection((config.mqtt.host, config.mqtt.port), timeout=2):
            yield Check("network", "mqtt broker", "ok", f"{target} reachable")
    except OSError as exc:
        yield Check("network", "mqtt broker", "warn",
                    f"{target} unreachable ({exc.strerror or exc}); telemetry will be spooled until it is")


def check_llm_endpoint(config: Config) -> Iterable[Check]:
    url = config.llm.cloud_base_url.rstrip("/")
    if not url:
        yield Check("network", "cloud LLM", "ok", "not configured: the embedded model answers")
        return
    request = urllib.request.Request(url + "/models")
    if config.llm.cloud_api_key:
        request.add_header("Authorization", f"Bearer {config.llm.cloud_api_key}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            yield Check("network", "cloud LLM", "ok", f"{url} answered {response.status}")
    except urllib.error.HTTPError as exc:
        hint = "check llm.cloud_api_key" if exc.code in (401, 403) else "check llm.cloud_base_url"
        yield Check("network", "cloud LLM", "warn", f"{url} answered {exc.code}: {hint}")
    except (urllib.error.URLError, OSError) as exc:
        yield Check("network", "cloud LLM", "warn", f"{url} unreachable ({exc}); the embedded model will answer")


def check_fleet_spool(config: Config) -> Iterable[Check]:
    """Turn traces waiting on disk for the broker, and how many a full spool has dropped."""
    if not config.mqtt.enabled:
        return
    spool = config.state_dir / "fleet" / "telemetry-spool"
    waiting = sum(1 for _ in spool.glob("*.json")) if spool.is_dir() else 0
    try:
        dropped = int((spool / "dropped").read_text().strip() or 0)
    except (OSError, ValueError):
        dropped = 0
    detail = f"{waiting} traces waiting for the broker (max {config.telemetry.spool_max})"
    if dropped:
        yield Check("fleet", "telemetry spool", "warn",
                    f"{detail}; {dropped} dropped when full: raise telemetry.spool_max or fix the broker link")
    else:
        yield Check("fleet", "telemetry spool", "ok", detail)


def check_speech_output(config: Config) -> Iterable[Check]:
    """The configured voice exists (without loading it), and whether barge-in has echo cancellation."""
    from edgeagent.tts.factory import piper_voice_path

    if config.tts.engine == "piper":
        voice = piper_voice_path(config)
        missing = [str(p) for p in (voice, voice.with_name(voice.name + ".json")) if not p.is_file()]
        yield Check("tts", "piper voice", "fail" if missing else "ok",
                    f"missing {', '.join(missing)} (set tts.voice or `edgeagent models install`)" if missing else str(voice))
    aec = importlib.util.find_spec("pywebrtc_audio") is not None
    yield Check("tts", "echo cancellation", "ok" if aec or not config.agent.echo_cancel else "warn",
                "WebRTC AEC3 for barge-in" if aec else "pywebrtc-audio missing: barge-in ducks instead "
                "(pip install 'edgeagent[aec]')")


CHECKS: list[CheckFn] = [check_packages, check_tflite_runtime, check_binaries, check_audio, check_models,
                         check_broker, check_llm_endpoint, check_fleet_spool, check_speech_output]


def run_checks(config: Config, checks: Iterable[CheckFn] = CHECKS) -> list[Check]:
    results: list[Check] = []
    for fn in checks:
        try:
            results.extend(fn(config))
        except Exception as exc:  # a broken check must not hide the others
            results.append(Check("doctor", fn.__name__, "fail", f"check crashed: {exc}"))
    return results


def check_stt(config: Config) -> Iterable[Check]:
    """The configured STT engine can be built; for vosk, explain how to add an English model."""
    vosk_help = ("no English vosk model is packaged (PyPI/Debian): unpack one, e.g. vosk-model-small-en-us-0.15 "
                 "from the Vosk model list, into /var/lib/edgeagent/models/stt/vosk-en and set "
                 "stt.vosk_model_dir to that directory")
    if config.stt.vosk_model_dir:
        from pathlib import Path

        from edgeagent.stt.base import SttError
        from edgeagent.stt.vosk_engine import check_vosk_model_dir

        try:
            check_vosk_model_dir(Path(config.stt.vosk_model_dir))
            yield Check("stt", "vosk model", "ok", config.stt.vosk_model_dir)
        except SttError as exc:
            yield Check("stt", "vosk model", "fail" if config.stt.engine == "vosk" else "warn", f"{exc}; {vosk_help}")
    else:
        yield Check("stt", "vosk model", "fail" if config.stt.engine == "vosk" else "ok",
                    f"stt.vosk_model_dir not set: {vosk_help}")
    if config.stt.engine != "vosk":
        from edgeagent.stt import SttError, packaged_model_dir

        try:
            yield Check("stt", f"{config.stt.engine} model", "ok", str(packaged_model_dir(config, config.stt.engine)))
        except SttError as exc:
            yield Check("stt", f"{config.stt.engine} model", "fail", str(exc))


CHECKS.append(check_stt)

# what to do when an engine crashes on this machine, per family
ENGINE_ADVICE = {
    "wake": "set wake.engine to the other engine (microwakeword / openwakeword)",
    "vad": "set vad.engine to the other engine (webrtc / silero)",
    "stt": "set stt.engine = pocketsphinx",
    "tts": "set tts.engine = espeak",
    "aec": "set agent.echo_cancel = false (barge-in then ducks)",
    "llm": "set llm.local_enabled = false and use a cloud endpoint, and report the CPU (lscpu) as a bug",
}
ENGINE_CHECK_TIMEOUT_S = 300.0


def check_engines(config: Config) -> Iterable[Check]:
    """Each native engine loaded and run once in a child process: a crash is a FAIL, not our crash."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    from edgeagent.config import to_toml
    from edgeagent.llm.local import describe_exit

    families = ["wake", "vad", "stt", "tts"] + (["aec"] if config.agent.echo_cancel else []) + \
        (["llm"] if config.llm.local_enabled else [])
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(to_toml(config))  # redacted: no engine here needs a secret
    try:
        for family in families:
            command = [sys.executable, "-m", "edgeagent.runtime.engine_check", "--config", fh.name, family]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=ENGINE_CHECK_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                yield Check("engine", family, "fail", f"hung for {ENGINE_CHECK_TIMEOUT_S:.0f} s: {ENGINE_ADVICE[family]}")
                continue
            if done.returncode == 0:
                result = json.loads(done.stdout.strip().splitlines()[-1])
                yield Check("engine", family, "ok", f"{result['engine']} ran once in {result['ms']} ms")
            elif done.returncode < 0:
                yield Check("engine", family, "fail", f"crashed ({describe_exit(done.returncode)}) on this CPU: "
                                                      f"{ENGINE_ADVICE[family]}")
            else:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                yield Check("engine", family, "fail", f"{why}: {ENGINE_ADVICE[family]}")
    finally:
        os.unlink(fh.name)


def check_engine_starts(config: Config) -> Iterable[Check]:
    """Engines that crashed the daemon at start, and which fallback it runs on because of that."""
    from edgeagent.runtime.engine_guard import CRASH_LIMIT, FALLBACKS, StartGuard

    for key, record in sorted(StartGuard(config.state_dir).records().items()):
        family, _, engine = key.partition(":")
        fallback = FALLBACKS.get(family, {}).get(engine)
        if record.attempts >= CRASH_LIMIT and fallback:
            yield Check("engine", f"{family} start", "warn",
                        f"{engine} crashed the daemon {record.attempts} times at start; it runs {fallback} instead. "
                        "Fixed? `edgeagent doctor --retry-engines`")
        elif record.attempts:
            yield Check("engine", f"{family} start", "warn", f"{engine}: {record.attempts} start(s) died while loading it")


CHECKS += [check_engine_starts, check_engines]
