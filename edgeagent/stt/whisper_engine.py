"""Whisper tiny.en through faster-whisper (CTranslate2 int8): accurate, but not streaming.

Whisper decodes a whole utterance at once, so waiting for end of turn and then decoding would add
that to every reply.  Instead we decode *speculatively*: as soon as ``speculate_after_ms`` of low
energy follows speech, the audio so far is decoded on a background thread.  If no new speech
arrives before ``finish()``, that result is returned at once; otherwise it is discarded and the
utterance decoded again.  Partials come from occasional background decodes while the user speaks
(every ``partial_interval_s`` of new audio, only when no decode is running).

A decode does not go through ``WhisperModel.transcribe``: that pads every utterance to Whisper's
30 s window, and the tiny.en encoder costs ~800 ms on 30 s against ~100-170 ms on 10 s.  An
utterance that fits ``Decode.window_s`` is encoded on that window alone (zero-padded log-mel) and
decoded by CTranslate2's ``generate`` (beam search, no timestamps); below ~8 s windows Whisper starts
repeating itself.  Longer utterances, and a decode that repeats itself anyway, go through
``transcribe``.  On 150 clips (5 voices, clean and noisy) beam 5 on 10 s gave WER 9.0 % against
9.5 % for ``transcribe`` with beam 1, at ~140 ms instead of ~780 ms a decode.
"""

from __future__ import annotations

import logging
import math
import os
import re
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeagent.stt.base import SAMPLE_RATE, SttError, Transcript, as_int16
from edgeagent.stt.energy import PauseTracker


HOP = 160  # samples per log-mel frame
NO_SPEECH_PROB, LOW_LOGPROB = 0.6, -1.0  # transcribe()'s defaults: both together mean "nothing was said"
REPEATING = 2.4  # transcribe()'s compression-ratio limit: above it the text repeats itself


@dataclass(frozen=True)
class Decode:
    """How an utterance is decoded: the knobs accuracy work turns (beam, prompt) in one place."""

    beam_size: int = 5
    window_s: float = 10.0  # utterances up to this long are encoded on this window alone; 0: always 30 s
    prompt: str = ""  # text that came before (context, names to expect); empty: none


@dataclass
class _Decode:
    future: Future
    samples: int  # audio length it covers
    speech_frames: int  # speech frames seen when it started: later speech makes it stale


class WhisperRecognizer:
    name = "whisper"

    def __init__(self, model_dir: Path, language: str = "en", speculate_after_ms: int = 180,
                 partial_interval_s: float = 1.0, cpu_threads: int | None = None, decode: Decode = Decode()):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every decode at INFO

        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise SttError(f"whisper model missing: {model_dir}/model.bin not found; run `edgeagent models install`")
        threads = cpu_threads or min(4, os.cpu_count() or 1)
        try:
            self._model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=threads)
        except (RuntimeError, ValueError) as exc:
            raise SttError(f"faster-whisper could not load {model_dir}: {exc}") from None
        self.language = language
        self.decode = decode
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe",
                                    language=language)
        self._suppress = list(get_suppressed_tokens(self._tokenizer, [-1]))
        self._speculate_samples = SAMPLE_RATE * speculate_after_ms // 1000 if speculate_after_ms else 0
        self._partial_samples = int(SAMPLE_RATE * partial_interval_s)
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper-decode")
        self._pause = PauseTracker()
        self.speculation_hits = 0  # finishes answered by a speculative decode (benchmarks report it)
        self.decodes = {"window": 0, "30s": 0}  # which way each decode went (benchmarks report it)
        self.reset()

    # ------------------------------------------------------------ Recognizer

    def start(self) -> None:
        self.reset()

    def feed(self, samples: np.ndarray) -> str | None:
        samples = as_int16(samples)
        self._chunks.append(samples)
        self._samples += len(samples)
        if self._pause.update(samples):
            self._speech_frames += 1
        partial = self._collect_partial()
        if self._pause.heard_speech:
            if self._speculate_samples and self._pause.trailing_samples >= self._speculate_samples:
                self._maybe_speculate()
            elif self._pause.trailing_samples == 0:
                self._maybe_partial()
        return partial

    def finish(self) -> Transcript:
        try:
            if not self._pause.heard_speech:
                return Transcript("", None)  # whisper invents words on pure silence
            spec = self._speculation
            if spec is not None and spec.speech_frames == self._speech_frames:
                result = spec.future.result()
                if result.text:
                    self.speculation_hits += 1
                    return result
                # nothing recognised in the audio cut at the pause: try once more on all of it
            return self._submit(self._samples).future.result()
        finally:
            self.reset()

    def settled_text(self) -> str | None:
        """The speculative transcript once decoded, while no speech has come after it; else None.
        Read from the event loop while the worker feeds: a snapshot, never a wait."""
        spec = self._speculation
        if spec is None or not spec.future.done() or spec.speech_frames != self._speech_frames:
            return None
        return None if spec.future.exception() else spec.future.result().text

    def reset(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._samples = 0
        self._speech_frames = 0
        self._pause.reset()
        self._speculation: _Decode | None = None
        self._partial: _Decode | None = None
        self._partial_at = 0
        self._last_partial = ""

    def close(self) -> None:
        self.reset()
        self._decoder.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ decoding

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """Decode int16 16 kHz audio in one go (blocking): on the short window when it fits."""
        floats = audio.astype(np.float32) / 32768.0
        window = int(self.decode.window_s * SAMPLE_RATE)
        if window and len(floats) <= window:
            result = self._generate(floats, window // HOP)
            if result is not None:
                self.decodes["window"] += 1
                return result
        self.decodes["30s"] += 1
        return self._transcribe_30s(floats)

    def _prompt(self) -> list[int]:
        tokenizer, prompt = self._tokenizer, []
        if self.decode.prompt.strip():
            prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + self.decode.prompt.strip())]
        return prompt + list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]

    def _generate(self, floats: np.ndarray, frames: int) -> Transcript | None:
        """Encoder on ``frames`` log-mel frames, beam search without timestamps; None when the text
        repeats itself (the caller decodes on the full window instead)."""
        import ctranslate2

        mel = self._model.feature_extractor(floats)[:, :frames]
        mel = np.ascontiguousarray(np.pad(mel, ((0, 0), (0, frames - mel.shape[1])))[None])
        model = self._model.model
        encoded = model.encode(ctranslate2.StorageView.from_array(mel), to_cpu=False)
        prompt = self._prompt()
        result = model.generate(
            encoded, [prompt], beam_size=self.decode.beam_size, max_length=len(prompt) + max_tokens(len(floats)),
            return_scores=True, return_no_speech_prob=True, suppress_blank=True, suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        text = self._tokenizer.decode(tokens).strip()
        logprob = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else -math.inf
        if result.no_speech_prob > NO_SPEECH_PROB and logprob < LOW_LOGPROB:
            return Transcript("", None)  # as transcribe() does: silence or noise, not words
        if text and len(text) / len(zlib.compress(text.encode())) > REPEATING:
            return None
        if not any(c.isalnum() for c in text):
            return Transcript("", None)  # "." on a breath: no words
        return Transcript(without_repeats(text), round(math.exp(logprob), 3))

    def _transcribe_30s(self, floats: np.ndarray) -> Transcript:
        segments, _info = self._model.transcribe(
            floats, language=self.language, beam_size=self.decode.beam_size, without_timestamps=True,
            condition_on_previous_text=False, vad_filter=False, initial_prompt=self.decode.prompt or None,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Transcript("", None)
        mean_logprob = sum(s.avg_logprob for s in segments) / len(segments)
        return Transcript(text, round(math.exp(mean_logprob), 3))

    def _submit(self, samples: int) -> _Decode:
        audio = np.concatenate(self._chunks)[:samples] if self._chunks else np.zeros(0, np.int16)
        return _Decode(self._decoder.submit(self.transcribe, audio), samples, self._speech_frames)

    def _busy(self) -> bool:
        return any(d is not None and not d.future.done() for d in (self._speculation, self._partial))

    def _maybe_speculate(self) -> None:
        spec = self._speculation
        if spec is not None and spec.speech_frames == self._speech_frames:
            return  # already decoding exactly this speech
        # all of it, the pause too: a soft last sound ("mu-ch") is quieter than the pause threshold, and
        # cut at the last loud frame the word was lost ("... sleep so")
        self._speculation = self._submit(self._samples)

    def _maybe_partial(self) -> None:
        if self._partial_samples and self._samples - self._partial_at >= self._partial_samples and not self._busy():
            self._partial_at = self._samples
            self._partial = self._submit(self._samples)

    def _collect_partial(self) -> str | None:
        decode = self._partial
        if decode is None or not decode.future.done():
            return None
        self._partial = None
        text = decode.future.result().text
        if text and text != self._last_partial:
            self._last_partial = text
            return text
        return None


def without_repeats(text: str) -> str:
    """Whisper on a short window sometimes says a short sentence twice ("What is 2 plus 2? What is 2
    plus 2"); a sentence that repeats the one before it is dropped."""
    kept: list[str] = []
    for sentence in re.split(r"(?<=[.?!])\s+", text.strip()):
        if sentence and (not kept or _words(sentence) != _words(kept[-1])):
            kept.append(sentence)
    return " ".join(kept)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def max_tokens(samples: int) -> int:
    """A bound on the tokens in ``samples`` of speech: fast talkers say ~4 tokens a second."""
    return int(6 * samples / SAMPLE_RATE) + 10
