"""Signal level: the one RMS every stage that needs loudness uses (endpointing, barge-in, pauses)."""

from __future__ import annotations

import numpy as np


def rms(samples: np.ndarray) -> float:
    """Root mean square of int16 (or float) samples; 0 for none."""
    if len(samples) == 0:
        return 0.0
    x = np.asarray(samples, dtype=np.float32)
    return float(np.sqrt(np.mean(x * x)))
