"""Ready-made audio played between spoken chunks (a timer's chime): the Speaker takes it as is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Sound:
    samples: np.ndarray  # int16 mono
    rate: int
    label: str = ""  # what it stands for in the heard text ("" for none)
