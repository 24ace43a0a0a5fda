"""The rooms and noises the evaluation's speech is heard in, made from seeds (nothing recorded).

- rooms: a synthetic impulse response (direct path + exponentially decaying diffuse tail); "near" is
  a speaker across a small room (RT60 0.3 s, direct sound 9 dB above the reverb), "far" across a
  larger one (RT60 0.6 s, reverb 3 dB above the direct sound, and 10 dB quieter at the microphone);
- babble: other people talking (several synthetic talkers summed, from text that is not the test's);
- fan: broadband rumble with a blade-rate wobble; hum: mains hum with harmonics over hiss;
- ``mix`` puts noise at an SNR measured against the speech's active level (silences not counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 16000


@dataclass(frozen=True)
class Room:
    name: str  # "near" | "far"
    rt60_s: float
    drr_db: float  # direct-to-reverberant energy ratio
    level_db: float  # speech active level at the microphone, dBFS
    seed: int


NEAR_LEVEL_DB, FAR_LEVEL_DB = -26.0, -36.0


def room(name: str, seed: int) -> Room:
    if name == "near":
        return Room("near", 0.3, 9.0, NEAR_LEVEL_DB, seed)
    return Room("far", 0.6, -3.0, FAR_LEVEL_DB, seed)


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution through the FFT, cut to ``len(x)``."""
    n = 1 << (len(x) + len(h) - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, n) * np.fft.rfft(h, n), n)[: len(x)]


def colored(samples: int, rng: np.random.Generator, exponent: float, corner_hz: float = 20.0) -> np.ndarray:
    """Noise whose power falls as 1/f**exponent above ``corner_hz`` (1: pink, 2: brown), unit std."""
    spectrum = np.fft.rfft(rng.normal(0, 1, samples))
    f = np.fft.rfftfreq(samples, 1 / RATE)
    spectrum *= 1 / np.maximum(f, corner_hz) ** (exponent / 2)
    x = np.fft.irfft(spectrum, samples)
    return x / max(np.std(x), 1e-12)


def impulse_response(r: Room) -> np.ndarray:
    """Direct path, then a diffuse tail decaying by 60 dB over ``rt60_s`` (2.5 ms pre-delay)."""
    rng = np.random.default_rng(r.seed)
    n = int(r.rt60_s * RATE)
    t = np.arange(n) / RATE
    tail = rng.normal(0, 1, n) * 10 ** (-3 * t / r.rt60_s)
    tail[: int(0.0025 * RATE)] = 0
    tail *= np.sqrt(10 ** (-r.drr_db / 10) / np.sum(tail ** 2))
    tail[0] = 1.0
    return tail


def active_rms(audio: np.ndarray) -> float:
    """RMS over the louder 20 ms frames (speech, not the pauses between words)."""
    x = audio.astype(np.float64)
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    if not len(frames):
        return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
    energy = np.sqrt((frames ** 2).mean(axis=1))
    loud = energy[energy > 0.1 * energy.max()] if energy.max() > 0 else energy
    return float(np.sqrt(np.mean(loud ** 2)))


def in_room(speech: np.ndarray, r: Room) -> np.ndarray:
    """Speech (int16) as the microphone hears it in room ``r``, at the room's level, float32."""
    wet = convolve(speech.astype(np.float64), impulse_response(r))
    return (wet * (32768 * 10 ** (r.level_db / 20) / max(active_rms(wet), 1e-6))).astype(np.float32)


def fan(samples: int, seed: int) -> np.ndarray:
    """Fan noise: brown + pink-ish rumble, amplitude wobbling at a blade rate (~12 Hz)."""
    rng = np.random.default_rng(seed)
    brown, pink = colored(samples, rng, 2.0, 40.0), colored(samples, rng, 1.0, 200.0)
    t = np.arange(samples) / RATE
    wobble = 1 + 0.25 * np.sin(2 * np.pi * (11 + 2 * rng.random()) * t)
    noise = (brown + 0.6 * pink) * wobble
    return (noise / np.std(noise)).astype(np.float32)


def hum(samples: int, seed: int, mains_hz: float = 50.0) -> np.ndarray:
    """Mains hum (fundamental + odd/even harmonics with drifting phase) over a hiss floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / RATE
    tone = sum((0.8 ** k) * np.sin(2 * np.pi * mains_hz * k * t + rng.random() * 6.28) for k in range(1, 9))
    noise = tone / np.std(tone) + 0.5 * colored(samples, rng, 0.5)
    return (noise / np.std(noise)).astype(np.float32)


def babble(talkers: list[np.ndarray], samples: int, seed: int) -> np.ndarray:
    """Several people talking at once: each talker's speech (int16, looped from a random offset)
    at a random level within 6 dB, summed and normalised."""
    rng = np.random.default_rng(seed)
    out = np.zeros(samples, np.float64)
    for voice in talkers:
        x = voice.astype(np.float64) / max(active_rms(voice), 1e-6)
        start = int(rng.integers(0, len(x)))
        looped = np.resize(np.roll(x, -start), samples)
        out += looped * 10 ** (rng.uniform(-6, 0) / 20)
    return (out / max(np.std(out), 1e-6)).astype(np.float32)


def mix(speech: np.ndarray, noise: np.ndarray | None, snr_db: float | None) -> np.ndarray:
    """Speech (float, at its level) plus ``noise`` scaled to ``snr_db`` below its active level; int16."""
    out = speech.astype(np.float64)
    if noise is not None and snr_db is not None:
        noise = noise[: len(out)]
        out = out + noise * (active_rms(speech) / 10 ** (snr_db / 20) / max(float(np.std(noise)), 1e-9))
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)
