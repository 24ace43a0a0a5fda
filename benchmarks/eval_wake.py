"""Wake-word accuracy on the evaluation set: each model's probabilities over every clip and stream
(recorded once through the real streaming models, cached), replayed through the detector's own
``Trigger`` at any threshold: FRR, false accepts per hour, DET curves, calibrated thresholds.

A positive counts as heard when the detector fires between the start of the wake phrase and
``HIT_AFTER_S`` after its end (a later detection would open the turn in the middle of the question);
every detection in a negative stream is a false accept.  Streams are heard continuously.
"""

from __future__ import annotations

import collections
import hashlib
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.eval_set import LEAD_S, RATE, Clip, Stream
from benchmarks.speech import CACHE
from edgeagent.ear.wake import (REARM_FRACTION, MicroWakeWordModel, OpenWakeWordFrontend, OpenWakeWordModel,
                                Trigger, find_model, find_openwakeword_model)

HIT_AFTER_S = 0.75
REFRACTORY_S = 2.0
SCORES_VERSION = 1  # bump when the set or the scoring changes: cached probabilities are then stale
FRESH = False  # True: score again even where a cached recording exists (python -m benchmarks.eval --fresh)
MODELS = {"microwakeword": ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft"),
          "openwakeword": ("okay_nabu", "hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy")}


@dataclass
class Track:
    """One model's probabilities over one piece of audio, each with the audio time it was made at."""

    ends: np.ndarray
    probs: np.ndarray
    seconds: float


def model_info(engine: str, name: str, models_dir: Path):
    return find_model(name, models_dir) if engine == "microwakeword" else find_openwakeword_model(name, models_dir)


def score_audio(engine: str, names: tuple[str, ...], audio: np.ndarray, models_dir: Path,
                condition: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Track]:
    """Every model of ``names`` on ``audio`` (20 ms frames, as the detector is fed), from a fresh state.
    ``condition`` (a per-frame filter: gain control, noise suppression) runs before the models."""
    if engine == "microwakeword":
        models = {n: MicroWakeWordModel(find_model(n, models_dir)) for n in names}
    else:
        frontend = OpenWakeWordFrontend(models_dir / "wake" / "openwakeword")
        models = {n: OpenWakeWordModel(find_openwakeword_model(n, models_dir), frontend) for n in names}
    ends: dict[str, list[float]] = {n: [] for n in names}
    probs: dict[str, list[float]] = {n: [] for n in names}
    for index, start in enumerate(range(0, len(audio) - 319, 320)):
        frame = audio[start:start + 320]
        if condition is not None:
            frame = condition(frame)
        end_s = (start + 320) / RATE
        for name, model in models.items():
            out = model.probabilities(frame, key=index)
            ends[name] += [end_s] * len(out)
            probs[name] += out
    return {n: Track(np.asarray(ends[n]), np.asarray(probs[n], np.float32), len(audio) / RATE) for n in names}


def fires(track: Track, threshold: float, window: int, refractory_s: float = REFRACTORY_S) -> list[tuple[float, float]]:
    """(time, score) of every detection the detector's Trigger makes on ``track`` at ``threshold``.
    Runs of scores under the re-arm level change nothing but the latch, so each run is replayed as
    one sample: the same decisions, a fraction of the Python calls."""
    means = rolling_mean(track.probs, window)
    keep = means >= threshold * REARM_FRACTION
    keep[1:] |= keep[:-1] != keep[1:]  # the first sample of each low run (clears the latch)
    keep[0] = True
    trigger = Trigger(threshold, collections.deque(maxlen=1))
    out = []
    for i in np.flatnonzero(keep):
        score = trigger.update([float(means[i])], float(track.ends[i]), refractory_s)
        if score is not None:
            out.append((float(track.ends[i]), score))
    return out


def rolling_mean(probs: np.ndarray, window: int) -> np.ndarray:
    """What the Trigger scores: the mean of the last ``window`` probabilities, 0 until it is full."""
    if window <= 1:
        return probs.astype(np.float64)
    c = np.cumsum(np.concatenate([[0.0], probs.astype(np.float64)]))
    out = np.zeros(len(probs))
    out[window - 1:] = (c[window:] - c[:-window]) / window
    return out


def hit(track: Track, threshold: float, window: int, phrase_end_s: float) -> float | None:
    """Time of the first detection inside the phrase's window, or None (a miss)."""
    for t, _ in fires(track, threshold, window):
        if LEAD_S - 0.1 <= t <= phrase_end_s + HIT_AFTER_S:
            return t
    return None


# ------------------------------------------------------------------ recording probabilities


@dataclass
class Recorded:
    """Probabilities of one model on one set: positives (with their phrase end) and negative streams."""

    positives: list[tuple[Clip, float, Track]] = field(default_factory=list)
    negatives: list[tuple[Stream, Track]] = field(default_factory=list)

    @property
    def negative_hours(self) -> float:
        return sum(track.seconds for _, track in self.negatives) / 3600


def _cache_file(kind: str, engine: str, split: str, what: str, conditioning: str) -> Path:
    key = f"{SCORES_VERSION}|{kind}|{engine}|{split}|{what}|{conditioning}"
    folder = CACHE / "wake-scores"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".pkl")


def _score_clips(args) -> list[tuple[Clip, float, dict[str, Track]]]:
    engine, names, clips, models_dir, conditioning = args
    out = []
    for clip in clips:
        audio, phrase_end, _ = clip.render()
        out.append((clip, phrase_end, score_audio(engine, names, audio, models_dir, conditioner(conditioning))))
    return out


def _score_stream(args) -> tuple[Stream, dict[str, Track]]:
    engine, names, stream, models_dir, conditioning = args
    return stream, score_audio(engine, names, stream.render(), models_dir, conditioner(conditioning))


def conditioner(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """A per-frame input filter by name: "" (none), "agc", "ns", "ns+agc" (WebRTC, pywebrtc-audio)."""
    if not name:
        return None
    from pywebrtc_audio import AudioProcessor

    level = int(name[2]) if name.startswith("ns") and name[2:3].isdigit() else 1  # "ns3+agc": level 3 (21 dB)
    apm = AudioProcessor(16000, 1, noise_suppression="ns" in name, auto_gain_control="agc" in name,
                         high_pass_filter=True, ns_level=level)

    def run(frame: np.ndarray) -> np.ndarray:
        return np.concatenate([apm.process(np.ascontiguousarray(frame[i:i + 160])) for i in (0, 160)])

    return run


def record_positives(pool: ProcessPoolExecutor, engine: str, word: str, clips: list[Clip], models_dir: Path,
                     conditioning: str = "") -> list[tuple[Clip, float, Track]]:
    """``word``'s model on its positives, cached per (engine, split, word, conditioning)."""
    path = _cache_file("pos", engine, clips[0].split, f"{word}|{len(clips)}|{clips[0].question != ''}", conditioning)
    if path.exists() and not FRESH:
        return pickle.loads(path.read_bytes())
    chunks = [clips[i::8] for i in range(8)]
    results = pool.map(_score_clips, [(engine, (word,), c, models_dir, conditioning) for c in chunks])
    out = [(clip, end, tracks[word]) for chunk in results for clip, end, tracks in chunk]
    out.sort(key=lambda r: r[0].key)
    path.write_bytes(pickle.dumps(out))
    return out


def record_negatives(pool: ProcessPoolExecutor, engine: str, streams: list[Stream], models_dir: Path,
                     conditioning: str = "") -> dict[str, list[tuple[Stream, Track]]]:
    """Every model of ``engine`` on the negative streams (one pass: openWakeWord shares its features)."""
    names = MODELS[engine]
    path = _cache_file("neg", engine, streams[0].split, f"{len(streams)}", conditioning)
    if path.exists() and not FRESH:
        return pickle.loads(path.read_bytes())
    results = list(pool.map(_score_stream, [(engine, names, s, models_dir, conditioning) for s in streams]))
    out = {n: [(stream, tracks[n]) for stream, tracks in results] for n in names}
    path.write_bytes(pickle.dumps(out))
    return out


# ------------------------------------------------------------------ figures


@dataclass(frozen=True)
class Operating:
    threshold: float
    frr: float
    fa_per_hour: float
    misses: int
    positives: int
    false_accepts: int


def operating_point(rec: Recorded, threshold: float, window: int,
                    select: Callable[[Clip], bool] = lambda c: True) -> Operating:
    chosen = [(c, e, t) for c, e, t in rec.positives if select(c)]
    misses = sum(hit(track, threshold, window, end) is None for _, end, track in chosen)
    false = sum(len(fires(track, threshold, window)) for _, track in rec.negatives)
    return Operating(threshold, misses / max(len(chosen), 1), false / max(rec.negative_hours, 1e-9), misses,
                     len(chosen), false)


THRESHOLDS = tuple(np.round(np.concatenate([np.arange(0.05, 0.9, 0.05), np.arange(0.9, 0.995, 0.01)]), 3))


def det_curve(rec: Recorded, window: int) -> list[Operating]:
    """FRR and false accepts per hour at each threshold of ``THRESHOLDS``."""
    return [operating_point(rec, th, window) for th in THRESHOLDS]


def calibrate(curve: list[Operating], max_fa_per_hour: float, tolerance: float = 0.01) -> Operating:
    """The threshold to ship: within ``max_fa_per_hour``, the highest whose FRR is within ``tolerance``
    of the lowest there (a flat stretch of FRR is bought with fewer false accepts on unseen speech)."""
    ok = [p for p in curve if p.fa_per_hour <= max_fa_per_hour]
    if not ok:
        return curve[-1]
    best = min(p.frr for p in ok)
    return max((p for p in ok if p.frr <= best + tolerance), key=lambda p: p.threshold)
