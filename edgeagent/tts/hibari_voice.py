"""hibari "heart": a 7.9 MB voice distilled from Kokoro, ~10x faster to first audio than piper.

On 2 cores its first chunk is ~35-50 ms alone and ~100-130 ms while the LLM generates (piper joe:
~350-480 ms and ~650-1,050 ms), which is most of the TTS part of time to first audio.  Only the
voice bundled in the ``hibari-tts`` wheel is used: its other voices download on first use, and
nothing may be downloaded at run time.  The ONNX model comes from the models directory (copied
out of the wheel by ``edgeagent models install``); the G2P (lexicons, tagger) is the package's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edgeagent.config import TtsConfig
from edgeagent.tts.base import TtsError, engine_package, trim_silence

BUNDLED_VOICE = "heart"
SEED = 0  # the voice samples noise for its timbre: a fixed seed makes the same text the same audio


class HibariSynthesizer:
    name = "hibari"
    sample_rate = 24000

    def __init__(self, model_path: str | Path, length_scale: float = 1.0, volume: float = 1.0, threads: int = 1):
        model_path = Path(model_path)
        if not model_path.is_file():
            raise TtsError(f"hibari voice model not found: {model_path} (run `edgeagent models install`)")
        hibari = engine_package("hibari", "hibari-tts")
        try:
            self._voice = hibari.Hibari(voice=BUNDLED_VOICE, model=str(model_path), threads=threads)
        except Exception as exc:  # onnxruntime errors: a broken or foreign file
            raise TtsError(f"cannot load hibari voice {model_path}: {exc}") from exc
        self.sample_rate = int(self._voice.sample_rate)
        self.model_path = model_path
        self._tune(length_scale, volume)
        for _ in self.synthesize("Ready."):  # loads the G2P and allocates: paid at start-up, not in turn one
            pass

    def configure(self, tts: TtsConfig) -> None:
        self._tune(tts.length_scale, tts.volume)

    def _tune(self, length_scale: float, volume: float) -> None:
        self._speed = min(2.0, max(0.5, 1.0 / length_scale))  # the model's range
        self._gain = 32767.0 * volume

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """One block per sentence of ``text``, each as soon as it is made (the Speaker passes one
        chunk, a sentence or a clause, at a time, so a cancel waits at most for one sentence)."""
        for wav in self._voice.stream(text, speed=self._speed, seed=SEED):
            # each sentence comes with ~200-320 ms of silence before it and ~300-460 ms after
            yield trim_silence(np.clip(wav * self._gain, -32768, 32767).astype(np.int16), self.sample_rate)

