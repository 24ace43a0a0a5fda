"""Speech-to-text engines behind one recognizer contract (``edgeagent.stt.base``).

``create_recognizer(config)`` picks the engine named by ``config.stt.engine``; engines import
their heavy packages only when created, so importing this package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeagent.stt.base import Recognizer, SttError, Transcript

if TYPE_CHECKING:
    from edgeagent.config import Config

__all__ = ["ENGINES", "Recognizer", "SttError", "Transcript", "create_recognizer"]

ENGINES = ("whisper", "pocketsphinx", "vosk")
_PACKAGED = {"whisper": "whisper/tiny.en", "pocketsphinx": "pocketsphinx/en-us"}  # manifest names


def create_recognizer(config: Config, engine: str | None = None) -> Recognizer:
    """The recognizer for ``engine`` (default ``config.stt.engine``); SttError names what is missing."""
    engine = engine or config.stt.engine
    if engine not in ENGINES:
        raise SttError(f"unknown STT engine {engine!r} (choose one of {', '.join(ENGINES)})")
    try:
        if engine == "vosk":
            from edgeagent.stt.vosk_engine import VoskRecognizer

            if not config.stt.vosk_model_dir:
                raise SttError("stt.vosk_model_dir is not set: no English vosk model is packaged; unpack one "
                               "(e.g. vosk-model-small-en-us) and point stt.vosk_model_dir at it")
            return VoskRecognizer(Path(config.stt.vosk_model_dir))
        model_dir = packaged_model_dir(config, engine)
        if engine == "pocketsphinx":
            from edgeagent.stt.pocketsphinx_engine import PocketsphinxRecognizer

            return PocketsphinxRecognizer(model_dir, grammar=config.stt.grammar)
        from edgeagent.stt.whisper_engine import Decode, WhisperRecognizer

        return WhisperRecognizer(model_dir, language=config.stt.language,
                                 speculate_after_ms=config.stt.speculate_after_ms,
                                 partial_interval_s=config.stt.partial_interval_s,
                                 decode=Decode(beam_size=config.stt.beam_size, window_s=config.stt.window_s,
                                               prompt=config.stt.prompt))
    except ImportError as exc:
        raise SttError(f"STT engine {engine!r} needs a package that is not installed ({exc.name}): "
                       "pip install 'edgeagent[stt]'") from None


def packaged_model_dir(config: Config, engine: str) -> Path:
    """The installed model directory of a packaged engine, or SttError saying how to install it."""
    from edgeagent.modelstore import find_entry

    if engine == "whisper" and config.stt.whisper_model == "base":  # a directory of separately listed files
        path = find_entry("whisper/base/model.bin").installed_path(config.models_dir).parent
    else:
        path = find_entry(_PACKAGED[engine]).installed_path(config.models_dir)
    if not path.is_dir():
        raise SttError(f"{engine} model directory {path} does not exist: run `edgeagent models install`")
    return path
