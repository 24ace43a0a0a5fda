"""Whisper tiny.en through faster-whisper (CTranslate2 int8): accurate, but it decodes whole
utterances, so the streaming wrapper decodes speculatively during the trailing silence."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeagent.stt.base import SttError, Transcript


class WhisperRecognizer:
    name = "whisper"

    def __init__(self, model_dir: Path, language: str = "en", threads: int = 0):
        if not (model_dir / "model.bin").is_file():
            raise SttError(f"no Whisper model in {model_dir} (run `edgeagent models install`)")
        from faster_whisper import WhisperModel

        self.language = language
        self.model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        self._audio: list[np.ndarray] = []

    def start(self) -> None:
        self._audio = []

    def feed(self, samples: np.ndarray) -> None:
        self._audio.append(samples)

    def audio(self) -> np.ndarray:
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)

    def decode(self, samples: np.ndarray) -> Transcript:
        """Transcribe int16 16 kHz audio (blocking; ~0.2-0.8 s on a 2-core machine)."""
        if len(samples) < 1600:  # under 0.1 s: nothing a person said
            return Transcript("")
        segments, _info = self.model.transcribe(
            samples.astype(np.float32) / 32768.0, language=self.language, beam_size=1,
            without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        confidence = math.exp(sum(s.avg_logprob for s in segments) / len(segments)) if segments else None
        return Transcript(text, None if confidence is None else round(confidence, 3))

    def finish(self) -> Transcript:
        return self.decode(self.audio())

    def reset(self) -> None:
        self._audio = []
