"""A fixed-capacity ring of int16 samples: keeps the most recent audio (pre-roll, echo reference)."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=np.int16)
        self._end = 0  # total samples ever written
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def write(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.int16)
        if len(samples) >= self.capacity:
            samples = samples[-self.capacity :]
        start = self._end % self.capacity
        first = min(len(samples), self.capacity - start)
        self._data[start : start + first] = samples[:first]
        self._data[: len(samples) - first] = samples[first:]
        self._end += len(samples)
        self._size = min(self.capacity, self._size + len(samples))

    def latest(self, count: int | None = None) -> np.ndarray:
        """The newest ``count`` samples (all held ones by default), oldest first, as a copy."""
        count = self._size if count is None else min(count, self._size)
        if count == 0:
            return np.zeros(0, dtype=np.int16)
        end = self._end % self.capacity
        idx = (np.arange(end - count, end)) % self.capacity
        return self._data[idx]

    def clear(self) -> None:
        self._size = 0
