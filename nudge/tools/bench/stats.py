"""The report's arithmetic: medians of repeated runs, the start-up cost taken out of a whole
process's time, and the ratios the targets are stated in (pure, tested in tests/test_bench.py).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float:
    """The median of repeated runs: one slow run on a loaded machine does not move it."""
    if not values:
        raise ValueError("median of no runs")
    return float(statistics.median(values))


def steady_rate(events: int, seconds: float, startup_seconds: float) -> float:
    """Events/s once running: the whole process's time less the fixed start-up cost (the
    same program's time on a topic too small to matter). Not above events/seconds' rate
    when start-up is not shorter than the run (noise on a tiny input): then the whole
    time is all there is to go by."""
    if events < 0 or seconds <= 0:
        raise ValueError("need a positive time and a non-negative count")
    work = seconds - startup_seconds
    return events / (work if work > 0 else seconds)


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def verdict(value: float, target: float, *, higher: bool = True) -> str:
    """'met' or 'not met' beside a figure and its target: at least the target (`higher`)
    or below it (a time)."""
    if math.isnan(value):  # not measured
        return "n/a"
    return "met" if (value >= target if higher else value < target) else "not met"


def load_average() -> str:
    """The 1/5/15-minute load averages and the cpu count: a noisy report is recognisable."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cpus"
