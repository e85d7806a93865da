"""Latency summaries shared by the benchmarks: one definition of the median and the p99."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def median_p99(values: Sequence[float]) -> tuple[float, float]:
    """The median and the 99th percentile (the value at rank ``floor(0.99 n)`` of the sorted values, the last
    one for fewer than 100) of a non-empty sample, in its own unit."""
    if not values:
        raise ValueError("no values to summarise")
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
