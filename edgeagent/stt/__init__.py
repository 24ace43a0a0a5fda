"""Speech-to-text engines behind one recognizer contract (``edgeagent.stt.base``)."""

from __future__ import annotations

from edgeagent.config import Config
from edgeagent.modelstore import model_path
from edgeagent.stt.base import SttError


def create_recognizer(config: Config):
    """The configured engine, its model loaded once."""
    if config.stt.engine == "whisper":
        from edgeagent.stt.whisper import WhisperRecognizer

        return WhisperRecognizer(model_path("whisper/tiny.en", config.models_dir), language=config.stt.language)
    raise SttError(f"stt.engine {config.stt.engine!r} is not available in this build")
