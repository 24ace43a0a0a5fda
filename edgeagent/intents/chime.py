"""The timer's ring: a generated two-tone chime (no sound file to ship or load)."""

from __future__ import annotations

import functools
import numpy as np

from edgeagent.audio.sound import Sound

@functools.cache
def chime(rate: int = 16000, period_s: float = 2.0) -> Sound:
    """Two soft bell tones (E6, C6) with decaying envelopes, then silence up to ``period_s``."""
    out = np.zeros(int(rate * period_s), np.float32)
    for start_s, freq in ((0.0, 1318.5), (0.35, 1046.5)):
        n = int(rate * 0.6)
        t = np.arange(n) / rate
        tone = (np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t)) * np.exp(-t * 6.0)
        attack = np.minimum(1.0, t / 0.005)
        begin = int(start_s * rate)
        out[begin:begin + n] += tone * attack
    return Sound((out / np.abs(out).max() * 0.5 * 32767).astype(np.int16), rate, label="")
