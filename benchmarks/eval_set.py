"""The evaluation set: who speaks, what they say, in which room and noise, and which half is held out.

Positives: a wake phrase, a short pause, and a question, from every English espeak-ng voice
(8 accents), six of its ``+variant`` voices, piper joe and hibari's "heart" voice, each at three
speeds, in ten acoustic conditions (clean, babble or fan/hum at 20 and 10 dB SNR, each near and far).
Negatives: an hour of ordinary sentences per half (Debian's fortunes, plus near-miss phrases) from
the same voices, in the same conditions, with no wake word in them; the detector hears each
5-minute stream continuously, as it would a room.

Tune and held-out halves share nothing: other voices, other questions, other sentences, other
babble talkers, and a noise kind (mains hum) the tuning half never hears.  Thresholds and levers
are chosen on the tune half; the figures quoted are the held-out half's.  Everything is rendered
from text and seeds: dry speech is cached (benchmarks.speech), rooms and noise are mixed on the fly.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
import numpy as np

from benchmarks import eval_audio as acoustics
from benchmarks.eval_text import HARD_NEGATIVES, QUESTIONS_HELDOUT, QUESTIONS_TUNE, WAKE_PHRASES, split_sentences
from benchmarks.speech import espeak_wav, hibari_wav, piper_wav
from edgeagent.audio.wav import read_audio

RATE = acoustics.RATE
SPLITS = ("tune", "heldout")
LEAD_S, TAIL_S = 1.0, 1.0  # noise before and after the speech in a positive clip
STREAM_S, STREAMS_PER_SPLIT = 300.0, 12  # an hour of negatives per half


@dataclass(frozen=True)
class Voice:
    family: str  # espeak | espeak+variant | piper | hibari
    name: str
    speeds: tuple[float, float, float]  # slow, normal, fast in the engine's own unit

    def render(self, text: str, speed: float) -> np.ndarray:
        """``text`` in this voice at ``speed``, 16 kHz int16 (cached on disk)."""
        if self.family == "piper":
            path = piper_wav(text, speed)
        elif self.family == "hibari":
            path = hibari_wav(text, speed)
        else:
            path = espeak_wav(text, self.name, int(speed))
        return read_audio(path, RATE)


ESPEAK_SPEEDS = (135.0, 165.0, 200.0)  # words per minute
PIPER_SPEEDS = (1.15, 1.0, 0.85)  # length scale: >1 is slower
HIBARI_SPEEDS = (0.85, 1.0, 1.15)

VOICES = {
    "tune": [Voice("espeak", v, ESPEAK_SPEEDS) for v in ("en-us", "en-gb", "en-gb-x-rp", "en-029")]
    + [Voice("espeak+variant", v, ESPEAK_SPEEDS) for v in ("en-us+f3", "en-gb+m3", "en-us+klatt")]
    + [Voice("piper", "joe", PIPER_SPEEDS)],
    "heldout": [Voice("espeak", v, ESPEAK_SPEEDS) for v in ("en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
                                                             "en-us-nyc")]
    + [Voice("espeak+variant", v, ESPEAK_SPEEDS) for v in ("en-us+f4", "en-us+Annie", "en-gb+grandpa")]
    + [Voice("hibari", "heart", HIBARI_SPEEDS)],
}
QUESTIONS = {"tune": QUESTIONS_TUNE, "heldout": QUESTIONS_HELDOUT}
NOISES = {"tune": ("babble", "fan"), "heldout": ("babble", "hum")}


@dataclass(frozen=True)
class Condition:
    noise: str  # none | babble | fan | hum
    snr: str  # clean | 20dB | 10dB
    room: str  # near | far

    @property
    def snr_db(self) -> float | None:
        return None if self.snr == "clean" else float(self.snr.removesuffix("dB"))


def conditions(split: str) -> list[Condition]:
    """Ten per half: clean near/far, and each noise at 20 and 10 dB, near and far."""
    out = [Condition("none", "clean", room) for room in ("near", "far")]
    out += [Condition(noise, snr, room) for noise in NOISES[split] for snr in ("20dB", "10dB")
            for room in ("near", "far")]
    return out


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1("|".join(map(str, parts)).encode()).digest()[:4], "little")


@dataclass(frozen=True)
class Clip:
    """One positive: the wake phrase (and, for the STT set, a question) in one condition."""

    split: str
    word: str
    voice: Voice
    speed: float
    condition: Condition
    question: str  # "" when the clip is the wake phrase alone
    gap_s: float

    @property
    def family(self) -> str:
        return self.voice.family

    @property
    def speed_name(self) -> str:
        return ("slow", "normal", "fast")[self.voice.speeds.index(self.speed)]

    @property
    def key(self) -> str:
        c = self.condition
        return f"{self.split}|{self.word}|{self.voice.name}|{self.speed}|{c.noise}|{c.snr}|{c.room}|{self.question}"

    def render(self) -> tuple[np.ndarray, float, float]:
        """(audio int16, wake phrase end s, question start s) as the microphone hears it."""
        phrase = self.voice.render(WAKE_PHRASES[self.word], self.speed)
        parts = [np.zeros(int(LEAD_S * RATE), np.int16), trim(phrase)]
        phrase_end = (len(parts[0]) + len(parts[1])) / RATE
        question_start = phrase_end
        if self.question:
            parts += [np.zeros(int(self.gap_s * RATE), np.int16)]
            question_start = phrase_end + self.gap_s
            parts += [trim(self.voice.render(self.question, self.speed))]
        parts.append(np.zeros(int(TAIL_S * RATE), np.int16))
        dry = np.concatenate(parts)
        return hear(dry, self.split, self.condition, _seed(self.key)), phrase_end, question_start


def trim(audio: np.ndarray, threshold: int = 200) -> np.ndarray:
    """Cut the synthesiser's leading and trailing silence (keeps 20 ms either side)."""
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) > threshold)
    if not len(loud):
        return audio
    return audio[max(0, loud[0] - 320): loud[-1] + 320]


def hear(dry: np.ndarray, split: str, condition: Condition, seed: int) -> np.ndarray:
    """Dry speech put in the condition's room and noise: int16 at the microphone."""
    wet = acoustics.in_room(dry, acoustics.room(condition.room, seed % 7 + (0 if split == "tune" else 100)))
    return acoustics.mix(wet, noise_bed(split, condition.noise, len(wet), seed), condition.snr_db)


def noise_bed(split: str, kind: str, samples: int, seed: int) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "fan":
        return acoustics.fan(samples, seed)
    if kind == "hum":
        return acoustics.hum(samples, seed, 50.0 if seed % 2 else 60.0)
    bed = babble_bed(split)
    start = seed % len(bed)
    return np.resize(np.roll(bed, -start), samples)


@functools.lru_cache(maxsize=2)
def babble_bed(split: str) -> np.ndarray:
    """Two minutes of six espeak talkers of this half talking over each other (their own sentences)."""
    voices = [v for v in VOICES[split] if v.family.startswith("espeak")][:6]
    sentences = split_sentences()[SPLITS.index(split)][-240:]  # the end of the list: not the negatives' text
    talkers = []
    for i, voice in enumerate(voices):
        speech = [trim(voice.render(s, voice.speeds[i % 3])) for s in sentences[i * 40:(i + 1) * 40]]
        talkers.append(np.concatenate([np.concatenate([s, np.zeros(RATE // 5, np.int16)]) for s in speech]))
    return acoustics.babble(talkers, 120 * RATE, _seed("babble", split))


def wake_clips(split: str, word: str) -> list[Clip]:
    """The positives of ``word``: the default wake word's carry a question (the STT set), others don't."""
    from edgeagent.config import WakeConfig

    return positives(split, word, with_question=word == WakeConfig().models[0])


def positives(split: str, word: str, with_question: bool) -> list[Clip]:
    """Every voice x speed x condition of ``split`` saying ``word`` (and a question after it)."""
    clips = []
    questions = QUESTIONS[split]
    for v, voice in enumerate(VOICES[split]):
        for s, speed in enumerate(voice.speeds):
            for c, condition in enumerate(conditions(split)):
                question = questions[(v * 3 + s * 7 + c) % len(questions)] if with_question else ""
                gap = 0.15 + 0.3 * (_seed(split, word, v, s, c) % 100) / 100
                clips.append(Clip(split, word, voice, speed, condition, question, round(gap, 2)))
    return clips


@dataclass(frozen=True)
class Stream:
    """Five minutes of one voice reading ordinary sentences (no wake word) in one condition."""

    split: str
    index: int
    voice: Voice | None  # None: noise alone (babble and the half's other noise, no foreground talker)
    condition: Condition
    sentences: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return STREAM_S

    def render(self) -> np.ndarray:
        samples = int(STREAM_S * RATE)
        rng = np.random.default_rng(_seed("stream", self.split, self.index))
        if self.voice is None:  # babble at a talker's level, the half's other noise 6 dB under it
            talk = noise_bed(self.split, "babble", samples, _seed(self.index))
            level = 32768 * 10 ** (acoustics.NEAR_LEVEL_DB / 20)
            other = noise_bed(self.split, NOISES[self.split][1], samples, _seed(self.index, "other"))
            return acoustics.mix(talk * level, other, 6.0)
        parts = [speech for _, speech in self._spoken(rng, samples)]
        dry = np.concatenate(parts)[:samples]
        dry = np.pad(dry, (0, samples - len(dry)))
        return hear(dry, self.split, self.condition, _seed("stream", self.split, self.index))

    def _spoken(self, rng: np.random.Generator, samples: int):
        """(text, audio) pieces in order, speech then a pause of 0.3-1.5 s, until the stream is full."""
        total = 0
        for i, text in enumerate(self.sentences):
            speech = trim(self.voice.render(text, self.voice.speeds[i % 3]))
            pause = np.zeros(int(rng.uniform(0.3, 1.5) * RATE), np.int16)
            yield text, speech
            yield "", pause
            total += len(speech) + len(pause)
            if total >= samples:
                return

    def said_at(self, t: float) -> str:
        """The sentence being spoken (or just finished) at ``t`` s: what a false accept heard."""
        if self.voice is None:
            return "(noise only)"
        rng, at, last = np.random.default_rng(_seed("stream", self.split, self.index)), 0.0, ""
        for text, audio in self._spoken(rng, int(STREAM_S * RATE)):
            last = text or last
            at += len(audio) / RATE
            if at >= t:
                return last
        return last


def negative_streams(split: str) -> list[Stream]:
    """An hour per half: eleven voices-in-a-condition streams and one of noise alone."""
    sentences = split_sentences()[SPLITS.index(split)]
    voices, conds = VOICES[split], conditions(split)
    streams, cursor = [], 0
    per_stream = 110  # more than five minutes of sentences at any speed
    for i in range(STREAMS_PER_SPLIT - 1):
        chunk = list(sentences[cursor:cursor + per_stream])
        cursor += per_stream
        for k, hard in enumerate(HARD_NEGATIVES[i % 2::2]):  # near misses spread through the stream
            chunk.insert(5 + k * 10, hard)
        streams.append(Stream(split, i, voices[i % len(voices)], conds[(i * 3) % len(conds)], tuple(chunk)))
    streams.append(Stream(split, STREAMS_PER_SPLIT - 1, None, Condition("babble", "noise only", "near"), ()))
    return streams
