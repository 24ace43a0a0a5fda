"""Transcript accuracy on the evaluation's positives, heard the way the daemon hears them.

Each clip goes frame by frame through the configured wake detector; where it fires, the endpointer
begins on that frame exactly as the turn controller does (its pre-roll never reaches back into the
wake word), the utterance it brackets (pre-roll + speech frames, up to its end-of-turn decision) is
fed to the configured recognizer, and ``finish()`` is timed.  Where the wake word was missed, the
endpointer begins ``MISSED_WAKE_LAG_S`` after the phrase (the typical detection lag), so every
question is scored.  Works against older checkouts too (only the recognizer protocol is used).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from benchmarks.eval_set import RATE, Clip
from benchmarks.stats import word_errors
from edgeagent.audio.frames import Frame
from edgeagent.config import Config
from edgeagent.ear.vad import create_endpointer, create_voice_activity
from edgeagent.ear.wake import create_wake_detector
from edgeagent.events import NoSpeech, SpeechEnded, SpeechStarted
from edgeagent.stt import create_recognizer

MISSED_WAKE_LAG_S = 0.2


@dataclass(frozen=True)
class Heard:
    clip: Clip
    woke: bool  # the configured detector fired on the phrase
    wake_s: float
    hypothesis: str
    errors: int
    words: int
    finish_s: float  # wall time of finish(): what the user waits for after the end of turn
    wake_cpu_s: float  # CPU time the detector took on this clip


def utterance_after(config: Config, audio: np.ndarray, wake_s: float, lookback_ms: int = 0) -> np.ndarray:
    """What the controller hands STT when the wake word fired at ``wake_s`` (``lookback_ms``: the
    pre-roll may reach that far back before the detection, into the wake word)."""
    endpointer = create_endpointer(config, create_voice_activity(config))
    step = RATE * config.audio.frame_ms // 1000
    chunks: list[np.ndarray] = []
    listening = False
    for index, start in enumerate(range(0, len(audio) - step + 1, step)):
        frame = Frame(audio[start:start + step], index, start / RATE, 0.0)
        if not listening and start / RATE + frame.duration_s >= wake_s:
            endpointer.begin(frame, lookback_ms)
            listening = True
        if not listening:
            endpointer.process(frame)  # keeps the pre-roll ring current, as while idle
            continue
        events = endpointer.process(frame)
        if chunks and endpointer.state.in_speech and not events:
            chunks.append(frame.samples)
        for event in events:
            if isinstance(event, SpeechStarted):
                chunks = [endpointer.preroll()]
            elif isinstance(event, (SpeechEnded, NoSpeech)):
                return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


def detect(config: Config, detector, audio: np.ndarray) -> tuple[float | None, float]:
    """(audio time of the first detection or None, CPU seconds) of ``detector`` on ``audio``."""
    detector.reset()
    step = RATE * config.audio.frame_ms // 1000
    started = time.process_time()
    first = None
    for index, start in enumerate(range(0, len(audio) - step + 1, step)):
        found = detector.process(Frame(audio[start:start + step], index, start / RATE, 0.0))
        if found and first is None:
            first = found[0].audio_s
    return first, time.process_time() - started


def hear_all(config: Config, clips: list[Clip], reference_of=lambda c: c.question, lookback_ms: int = 0,
             clean=lambda text: text, oracle_cut: bool = False, condition=None) -> list[Heard]:
    """Every clip through the configured detector, endpointer and recognizer (``clean``: what the
    transcript goes through before it is scored; ``oracle_cut``: the recognizer gets the question
    from 0.3 s before it starts instead, to see what the cut costs; ``condition``: a per-frame filter
    on what the endpointer and the recognizer hear, not the wake detector)."""
    detector = create_wake_detector(config)
    recognizer = create_recognizer(config)
    out = []
    try:
        for clip in clips:
            audio, phrase_end, question_start = clip.render()
            wake_s, cpu = detect(config, detector, audio)
            woke = wake_s is not None and wake_s <= phrase_end + 0.75
            begin = wake_s if woke else phrase_end + MISSED_WAKE_LAG_S
            heard_audio = conditioned(audio, condition()) if condition is not None else cleaned(config, audio)
            utterance = utterance_after(config, heard_audio, begin, lookback_ms)
            if oracle_cut:
                utterance = audio[int((question_start - 0.3) * RATE):]
            recognizer.start()
            for i in range(0, len(utterance), 320):
                recognizer.feed(utterance[i:i + 320])
            started = time.perf_counter()
            text = clean(recognizer.finish().text)
            took = time.perf_counter() - started
            errors, words = word_errors(reference_of(clip), text)
            out.append(Heard(clip, woke, begin, text, errors, words, took, cpu))
    finally:
        recognizer.close()
    return out


def cleaned(config: Config, audio: np.ndarray) -> np.ndarray:
    """What the controller's endpointer and STT hear: through the runtime's SpeechCleaner when the
    config has it on (a checkout without it hears the microphone)."""
    try:
        from edgeagent.ear.clean import create_cleaner
    except ImportError:
        return audio
    if not getattr(config.stt, "clean_audio", False):
        return audio
    cleaner = create_cleaner(config)
    step = RATE * config.audio.frame_ms // 1000
    return np.concatenate([cleaner(Frame(audio[i:i + step], 0, i / RATE, 0.0)).samples
                           for i in range(0, len(audio) - step + 1, step)])


def conditioned(audio: np.ndarray, run) -> np.ndarray:
    """``audio`` through a per-20-ms-frame filter (benchmarks.eval_wake.conditioner)."""
    step = 320
    return np.concatenate([run(audio[i:i + step]) for i in range(0, len(audio) - step + 1, step)])


def wer(heard: list[Heard]) -> float:
    return sum(h.errors for h in heard) / max(sum(h.words for h in heard), 1)
