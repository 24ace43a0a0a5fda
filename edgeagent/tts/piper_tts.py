"""Piper neural TTS: the voice is loaded once; each text chunk is synthesized sentence by sentence."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgeagent.tts.base import TtsError


class PiperSynthesizer:
    name = "piper"

    def __init__(self, voice_path: Path, length_scale: float = 1.0, volume: float = 1.0):
        config_path = Path(str(voice_path) + ".json")
        for path in (voice_path, config_path):
            if not path.is_file():
                raise TtsError(f"piper voice file {path} not found (a voice is an .onnx plus its .onnx.json)")
        from piper import PiperVoice, SynthesisConfig

        try:
            self.voice = PiperVoice.load(voice_path, config_path=config_path)
        except Exception as exc:  # onnxruntime / JSON errors name nothing useful on their own
            raise TtsError(f"piper voice {voice_path} cannot be loaded: {exc}") from None
        self.sample_rate = int(self.voice.config.sample_rate)
        self._settings = SynthesisConfig(length_scale=length_scale, volume=volume)
        for _ in self.synthesize("Ready."):  # warm-up: onnxruntime's first run is several times slower
            pass

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for chunk in self.voice.synthesize(text, syn_config=self._settings):
            yield chunk.audio_int16_array
