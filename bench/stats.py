"""Percentiles and rates: plain Python, no numpy."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """count, p50, p95, p99, max, mean, min (seconds in, seconds out)."""
    ordered = sorted(values)
    if not ordered:
        return {
            "count": 0,
            "p50": None,
            "p95": None,
            "p99": None,
            "max": None,
            "mean": None,
            "min": None,
        }
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50), digits),
        "p95": round(percentile(ordered, 95), digits),
        "p99": round(percentile(ordered, 99), digits),
        "max": round(ordered[-1], digits),
        "mean": round(sum(ordered) / len(ordered), digits),
        "min": round(ordered[0], digits),
    }


def peak_rate(times: Sequence[float], window: float = 1.0) -> float:
    """The most events in any `window`-second sliding window, per second."""
    ordered = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while t - ordered[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return round(best / window, 2)
