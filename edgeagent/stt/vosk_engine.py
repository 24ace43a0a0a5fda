"""vosk (Kaldi): streaming with partials and word confidences, for any vosk model directory.

No English vosk model is packaged on PyPI or Debian, so none is installed by default: a user
unpacks one (e.g. vosk-model-small-en-us) and sets ``stt.vosk_model_dir``; ``edgeagent doctor``
explains this.  Kaldi may close a segment on its own mid-utterance (``AcceptWaveform`` true);
those segments are kept and joined, so nothing said is lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeagent.stt.base import SAMPLE_RATE, SttError, Transcript, as_int16

_MARKERS = ("am/final.mdl", "conf/model.conf")


def check_vosk_model_dir(path: Path) -> None:
    """Raise SttError saying what is wrong with a would-be vosk model directory."""
    if not path.is_dir():
        raise SttError(f"stt.vosk_model_dir: {path} is not a directory (unpack a vosk model there)")
    missing = [m for m in _MARKERS if not (path / m).exists()]
    if missing:
        raise SttError(f"stt.vosk_model_dir: {path} is not a vosk model ({', '.join(missing)} missing)")


class VoskRecognizer:
    name = "vosk"

    def __init__(self, model_dir: Path):
        import vosk

        model_dir = Path(model_dir)
        check_vosk_model_dir(model_dir)
        vosk.SetLogLevel(-1)
        try:
            self._model = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception when Kaldi fails to load
            raise SttError(f"vosk could not load {model_dir}: {exc}") from None
        self._vosk = vosk
        self.reset()

    def start(self) -> None:
        self.reset()

    def feed(self, samples: np.ndarray) -> str | None:
        if self._rec.AcceptWaveform(as_int16(samples).tobytes()):
            self._keep(json.loads(self._rec.Result()))
            text = self._joined("")
        else:
            text = self._joined(json.loads(self._rec.PartialResult()).get("partial", ""))
        if text and text != self._partial:
            self._partial = text
            return text
        return None

    def finish(self) -> Transcript:
        self._keep(json.loads(self._rec.FinalResult()))
        text = self._joined("")
        confidence = round(sum(self._confidences) / len(self._confidences), 3) if self._confidences else None
        self.reset()
        return Transcript(text, confidence if text else None)

    def reset(self) -> None:
        self._rec = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
        self._rec.SetWords(True)
        self._segments: list[str] = []
        self._confidences: list[float] = []
        self._partial = ""

    def close(self) -> None:
        self.reset()

    def _keep(self, result: dict) -> None:
        if result.get("text"):
            self._segments.append(result["text"])
            self._confidences.extend(w.get("conf", 0.0) for w in result.get("result", []))

    def _joined(self, tail: str) -> str:
        return " ".join([*self._segments, tail] if tail else self._segments).strip()
