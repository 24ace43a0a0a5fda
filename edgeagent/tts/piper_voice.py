"""Piper neural TTS: the voice is loaded once, then each sentence is synthesized on demand.

``PiperVoice.synthesize`` yields one chunk per sentence, so a chunk of text from the LLM
(already a sentence or clause) comes back as a single block, ready for playback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgeagent.config import TtsConfig
from edgeagent.tts.base import TtsError, engine_package, trim_silence


class PiperSynthesizer:
    name = "piper"

    def __init__(self, model_path: str | Path, length_scale: float = 1.0, volume: float = 1.0):
        model_path = Path(model_path)
        config_path = Path(str(model_path) + ".json")
        if model_path.suffix != ".onnx":
            raise TtsError(f"piper voice {model_path}: expected an .onnx voice file")
        for path, what in ((model_path, "voice model"), (config_path, "voice config (the .onnx.json next to the model)")):
            if not path.is_file():
                raise TtsError(f"piper {what} not found: {path} (set tts.voice, or run `edgeagent models install`)")
        piper = engine_package("piper", "piper-tts")
        try:
            self._voice = piper.PiperVoice.load(model_path, config_path=config_path)
        except Exception as exc:  # onnxruntime / json errors: a broken or foreign file
            raise TtsError(f"cannot load piper voice {model_path}: {exc}") from exc
        self._config = piper.SynthesisConfig(length_scale=length_scale, volume=volume)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.model_path = model_path
        for _ in self.synthesize("Ready."):  # first inference allocates: pay it at start-up, not in turn one
            pass

    def configure(self, tts: TtsConfig) -> None:
        from piper import SynthesisConfig

        self._config = SynthesisConfig(length_scale=tts.length_scale, volume=tts.volume)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for chunk in self._voice.synthesize(text, syn_config=self._config):
            yield trim_silence(chunk.audio_int16_array, self.sample_rate)
