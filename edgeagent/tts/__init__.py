"""Text-to-speech: sentence chunking, piper streaming synthesis, espeak-ng fallback, playback."""

from __future__ import annotations

from pathlib import Path

from edgeagent.config import Config
from edgeagent.modelstore import model_path
from edgeagent.tts.base import TtsError


def create_synthesizer(config: Config):
    """The configured voice, loaded once at start-up."""
    tts = config.tts
    if tts.engine == "espeak":
        from edgeagent.tts.espeak import EspeakSynthesizer

        return EspeakSynthesizer(tts.espeak_voice, tts.length_scale, tts.volume)
    from edgeagent.tts.piper_tts import PiperSynthesizer

    voice = Path(tts.voice) if tts.voice else model_path("piper/en_US-joe-medium.onnx", config.models_dir)
    return PiperSynthesizer(voice, tts.length_scale, tts.volume)


__all__ = ["create_synthesizer", "TtsError"]
