"""Has the talker finished?  smart-turn v3.2 on the end of the utterance, off the event loop.

Silence alone cannot tell "What time is it?" from "Set a timer for ... ten minutes": both pause.
Pipecat's smart-turn v3.2 (BSD-2, a Whisper-tiny encoder with a classifier head, ONNX, 8.7 MB)
hears intonation and grammar in the last 8 s of audio and says how likely the turn is complete
(~110 ms a call on one thread, plus ~20 ms of log-mel features).  The endpointer asks it once a
short pause follows speech and ends the turn early when it says "complete", or waits longer when it
says "incomplete".  Inference runs on this model's own worker thread: the frame loop only submits
audio and later reads a finished future.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeagent.audio.frames import FRAME_RATE
from edgeagent.config import Config

WINDOW_S = 8  # the model hears the last 8 s (zero-padded in front when shorter)


class TurnModel(Protocol):
    def submit(self, audio: np.ndarray) -> Future:
        """Start judging int16 16 kHz audio (the utterance so far); the future gives P(complete)."""
        ...

    def close(self) -> None: ...


class SmartTurn:
    """smart-turn v3.2 run with onnxruntime directly (importing pipecat would pull its framework)."""

    name = "smart-turn"

    def __init__(self, model_path: Path, threads: int = 1):
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"smart-turn model {model_path} not found (run `edgeagent models install`)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        # Whisper's log-mel (80 bins, 10 ms hop): the same numbers as the transformers extractor the
        # model was trained with (checked to 2e-6)
        self._features = FeatureExtractor(feature_size=80)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smart-turn")
        self.probability(np.zeros(FRAME_RATE // 2, np.int16))  # first inference allocates: pay it at start-up

    def submit(self, audio: np.ndarray) -> Future:
        return self._worker.submit(self.probability, np.array(audio, dtype=np.int16, copy=True))

    def probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete) for int16 16 kHz audio ending now (blocking)."""
        window = WINDOW_S * FRAME_RATE
        samples = audio[-window:].astype(np.float32) / 32768.0
        samples = np.pad(samples, (window - len(samples), 0))
        samples = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)  # as the model was trained
        mel = self._features(samples, padding=0)[:, : window // 160]
        out = self._session.run(None, {"input_features": mel[None].astype(np.float32)})[0]
        return float(np.asarray(out).reshape(-1)[0])

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)


def create_turn_model(config: Config) -> TurnModel | None:
    """The configured end-of-turn model (``vad.turn_model``), or None for silence alone."""
    if config.vad.turn_model == "none":
        return None
    from edgeagent.modelstore import model_path

    return SmartTurn(model_path("smart-turn/v3.2-cpu", config.models_dir))
