"""The end-of-turn evaluation set: finished requests, and requests the talker has not finished.

A user who pauses mid-request ("set a timer for ... ten minutes") must not be cut off; a user
who finished must not wait.  espeak-ng ends every phrase with falling intonation, so unfinished
speech is made two ways: piper and hibari reading unfinished sentences, and finished sentences in
every voice cut at a word boundary mid-phrase (the prosody still rising, the last word not
lengthened).  Each request marks where a pause leaves it open ("Set a timer for | ten minutes"):
a cut there is an unfinished request, never a shorter complete one.  The cut goes in the quietest
20 ms between the two words as Whisper's word timestamps place them.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

from benchmarks.speech import CACHE, espeak_wav, hibari_wav, piper_wav
from edgeagent.audio.wav import read_audio

RATE = 16000
FRAME = 320

# "|" marks where a talker may pause with the request still open (after it, more must come)
REQUESTS = [
    "What is the capital of | France?", "Turn on the | kitchen lights.", "Set a timer for | ten minutes.",
    "What time is it in | London?", "Play some jazz music in the | living room.", "How tall is | Mount Everest?",
    "Add milk to my | shopping list.", "What is the | weather like tomorrow?", "Turn off the | bedroom lights.",
    "Tell me a fun fact about | cats.", "How many days are in | a week?", "Remind me to | call my mother at | six.",
    "Could you suggest a quick dinner with | eggs and rice?", "Which planet is | the red planet?",
    "Set the volume to | five.", "Who wrote | Romeo and Juliet?", "What do bees | make?", "Stop the music.",
    "Send a message to | my brother saying | I am late.", "Can you tell me the | score of the | game?",
]
FINISHED = [r.replace("| ", "") for r in REQUESTS]


def open_prefixes(request: str) -> list[str]:
    """The request up to each mark: what a talker who paused there has said so far."""
    parts = request.split(" | ")
    return [" ".join(parts[: i + 1]) for i in range(len(parts) - 1)]


Voice = Callable[[str], object]


def voices() -> dict[str, Voice]:
    return {
        "piper": piper_wav, "piper-slow": lambda t: piper_wav(t, 1.2), "hibari": hibari_wav,
        "hibari-slow": lambda t: hibari_wav(t, 0.85), "hibari-fast": lambda t: hibari_wav(t, 1.15),
        "espeak-us": espeak_wav, "espeak-gb": lambda t: espeak_wav(t, "en-gb"),
        "espeak-f": lambda t: espeak_wav(t, "en-us+f3", 150),
    }


NATURAL = ("piper", "piper-slow", "hibari", "hibari-slow", "hibari-fast")  # can read an unfinished sentence


@dataclass(frozen=True)
class Utterance:
    text: str  # what was said (for a cut: the words before the cut)
    voice: str
    kind: str  # finished | unfinished (read as such) | cut (a finished sentence cut mid-phrase)
    audio: np.ndarray  # int16 16 kHz, the speech only (no leading or trailing silence)
    rest: np.ndarray | None = None  # what the talker says after the pause (unfinished and cut only)
    rest_text: str = ""

    @property
    def finished(self) -> bool:
        return self.kind == "finished"


def trimmed(audio: np.ndarray, level: float = 300.0) -> np.ndarray:
    """The speech without the silence a voice puts around it (20 ms frames louder than ``level``)."""
    frames = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float32)
    loud = np.nonzero(np.sqrt((frames**2).mean(axis=1)) > level)[0]
    if not len(loud):
        return audio[:0]
    return audio[loud[0] * FRAME : (loud[-1] + 1) * FRAME]


def cut_mid_phrase(full: np.ndarray, words: int, prefix: np.ndarray) -> np.ndarray:
    """``full`` cut after its first ``words`` words: in the quietest 20 ms between the end of that word
    and the start of the next as Whisper times them (word timestamps), or, when Whisper's words do not
    line up with the text, near the length of the same voice reading the prefix alone."""
    bounds = _word_bounds(full)
    if bounds is not None and words < len(bounds):
        lo, hi = int((bounds[words - 1][1] - 0.04) * RATE), int((bounds[words][0] + 0.02) * RATE)
    else:
        lo, hi = len(prefix) - RATE * 150 // 1000, len(prefix) + RATE * 60 // 1000
    lo, hi = max(FRAME, lo), min(len(full) - FRAME, max(hi, lo + FRAME))
    quietest = min(range(lo, hi, FRAME // 4), key=lambda s: float(np.mean(full[s : s + FRAME].astype(np.float32) ** 2)))
    return full[: quietest + FRAME // 2]


@functools.lru_cache(maxsize=1)
def _whisper():
    from faster_whisper import WhisperModel

    from edgeagent.config import load_config
    from edgeagent.stt import packaged_model_dir

    return WhisperModel(str(packaged_model_dir(load_config(env={}), "whisper")), device="cpu", compute_type="int8")


def _word_bounds(audio: np.ndarray) -> list[tuple[float, float]] | None:
    """Whisper's word times for ``audio``, cached beside the generated speech (they never change)."""
    cache = CACHE / f"words-{hashlib.sha1(audio.tobytes()).hexdigest()[:16]}.json"
    if cache.exists():
        return json.loads(cache.read_text()) or None
    segments, _ = _whisper().transcribe(audio.astype(np.float32) / 32768, language="en", word_timestamps=True,
                                        condition_on_previous_text=False)
    bounds = [(w.start, w.end) for s in segments for w in (s.words or [])]
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(bounds))
    return bounds or None


def build(voice_names: tuple[str, ...] | None = None) -> list[Utterance]:
    """Every finished sentence in every voice; unfinished ones in the voices that can read them so;
    finished sentences cut mid-phrase in every voice."""
    table = voices()
    items: list[Utterance] = []
    for name in voice_names or tuple(table):
        say = lambda text: trimmed(read_audio(table[name](text)))  # noqa: E731
        for request in REQUESTS:
            text = request.replace("| ", "")
            full = say(text)
            items.append(Utterance(text, name, "finished", full))
            for prefix in open_prefixes(request):
                rest_text = text[len(prefix):].strip()
                cut = cut_mid_phrase(full, len(prefix.split()), say(prefix))
                items.append(Utterance(prefix, name, "cut", cut, full[len(cut):], rest_text))
                if name in NATURAL:
                    items.append(Utterance(prefix, name, "unfinished", say(prefix), say(rest_text), rest_text))
    return items
