"""Pick and load the configured synthesizer once, at start-up."""

from __future__ import annotations

from pathlib import Path

from edgeagent.config import Config
from edgeagent.tts.base import Synthesizer, TtsError

DEFAULT_PIPER_VOICE = "tts/en_US-joe-medium.onnx"  # manifest dest, inside the models directory
HIBARI_VOICE = "hibari/heart.onnx"  # manifest name


def piper_voice_path(config: Config) -> Path:
    return Path(config.tts.voice) if config.tts.voice else config.models_dir / DEFAULT_PIPER_VOICE


def create_synthesizer(config: Config) -> Synthesizer:
    """The engine named by ``config.tts.engine``; raises TtsError saying what is missing and why."""
    tts = config.tts
    if tts.engine == "hibari":
        from edgeagent.modelstore import find_entry
        from edgeagent.tts.hibari_voice import HibariSynthesizer

        return HibariSynthesizer(find_entry(HIBARI_VOICE).installed_path(config.models_dir),
                                 length_scale=tts.length_scale, volume=tts.volume)
    if tts.engine == "piper":
        from edgeagent.tts.piper_voice import PiperSynthesizer

        return PiperSynthesizer(piper_voice_path(config), length_scale=tts.length_scale, volume=tts.volume)
    if tts.engine == "espeak":
        from edgeagent.tts.espeak_voice import EspeakSynthesizer

        return EspeakSynthesizer(tts.espeak_voice, length_scale=tts.length_scale, volume=tts.volume)
    raise TtsError(f"unknown tts.engine {tts.engine!r} (known: hibari, piper, espeak)")
