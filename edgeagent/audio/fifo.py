"""Draining a queue of variable-length sample blocks into fixed-size buffers (device callbacks,
echo reference): the one piece of block bookkeeping both need."""

from __future__ import annotations

import collections

import numpy as np


def drain_into(blocks: collections.deque[np.ndarray], out: np.ndarray) -> int:
    """Move the oldest samples from ``blocks`` into ``out`` (front first); returns how many."""
    filled = 0
    while filled < len(out) and blocks:
        block = blocks[0]
        take = min(len(out) - filled, len(block))
        out[filled : filled + take] = block[:take]
        filled += take
        if take == len(block):
            blocks.popleft()
        else:
            blocks[0] = block[take:]
    return filled
