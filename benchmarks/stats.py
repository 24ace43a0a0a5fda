"""The benchmarks' arithmetic, once: percentiles (the fleet's own interpolating ``percentile``) and
word error rate (numbers spelled out, punctuation and case ignored)."""

from __future__ import annotations

import re
from typing import Iterable

from edgeagent.fleet.stats import percentile as _interpolated

NUMBERS = {str(i): w for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {str(10 * i): w for i, w in enumerate(
        "thirty forty fifty sixty seventy eighty ninety".split(), 3)}


def percentile(values: Iterable[float | None], q: float) -> float:
    """The ``q`` quantile (0..1) of the values that are there; NaN when there are none."""
    ordered = sorted(v for v in values if v is not None)
    return _interpolated(ordered, q) if ordered else float("nan")


def percentiles(values: Iterable[float | None]) -> dict[str, float] | None:
    """P50, P90, max and count; None when there is nothing to summarise."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    return {"p50": _interpolated(ordered, 0.5), "p90": _interpolated(ordered, 0.9), "max": ordered[-1],
            "n": len(ordered)}


def words(text: str) -> list[str]:
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower())
    return [NUMBERS.get(w, w) for w in text.split()]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edit distance, reference length): sum both over a set, then divide, for its WER."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)
