"""The statistics of the report: conversion intervals, two-arm comparisons, sample sizes.

Pure and deterministic (closed forms, no random draws), checked against scipy and
statsmodels in tests/test_stats.py.

>>> lo, hi = wilson(12, 34)
>>> f"{lo:.3f} {hi:.3f}"
'0.215 0.521'
>>> c = compare(12, 34, 11, 46, min_sample=30)
>>> f"p={c.p_value:.2f} beat={c.prob_beat:.2f} lift={c.lift:+.0%}"
'p=0.27 beat=0.13 lift=-32%'
>>> compare(3, 10, 5, 12, min_sample=100).enough
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)
_N = NormalDist()
# Above this many successes the exact sum of prob_beat has that many terms; the normal
# approximation of two Betas this large is accurate to far below what the report prints.
_EXACT_TERMS = 20_000


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n (95% by default): unlike the normal
    one, it stays inside [0, 1] and is honest for small n and rates near 0. n = 0: (0, 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_p(k_a: int, n_a: int, k_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) of the pooled two-proportion z-test of b against a. No variance
    (both 0% or both 100%) or an empty arm: (0, 1)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pooled = (k_a + k_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (k_b / n_b - k_a / n_a) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _lbeta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def prob_beat(k_a: int, n_a: int, k_b: int, n_b: int, prior: tuple[int, int] = (1, 1)) -> float:
    """P(rate_b > rate_a) under independent Beta-Binomial posteriors (uniform prior by
    default), in closed form (Evan Miller's sum for integer parameters), so the same counts
    always give the same figure.

    >>> round(prob_beat(0, 0, 0, 0), 6)
    0.5
    >>> prob_beat(10, 100, 30, 100) > 0.99
    True
    """
    aa, ba = prior[0] + k_a, prior[1] + n_a - k_a
    ab, bb = prior[0] + k_b, prior[1] + n_b - k_b
    if min(aa, ab) > _EXACT_TERMS:
        return _prob_beat_normal(aa, ba, ab, bb)
    if ab <= aa:
        return _beat_sum(aa, ba, ab, bb)
    return 1.0 - _beat_sum(ab, bb, aa, ba)


def _beat_sum(aa: int, ba: int, ab: int, bb: int) -> float:
    """P(X_b > X_a) for X ~ Beta: a sum of `ab` positive terms."""
    base = _lbeta(aa, ba)
    terms = (math.exp(_lbeta(aa + i, ba + bb) - math.log(bb + i) - _lbeta(1 + i, bb) - base)
             for i in range(ab))
    return min(1.0, max(0.0, math.fsum(terms)))


def _prob_beat_normal(aa: int, ba: int, ab: int, bb: int) -> float:
    def moments(a: int, b: int) -> tuple[float, float]:
        return a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1))

    ma, va = moments(aa, ba)
    mb, vb = moments(ab, bb)
    return _N.cdf((mb - ma) / math.sqrt(va + vb))


def sample_size(base: float, lift: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Recipients each arm needs for a two-sided test at `alpha` to detect a relative `lift`
    over a base rate with probability `power` (the normal approximation, unpooled under
    the alternative): the number to fix before an experiment starts.

    >>> sample_size(0.10, 0.20)
    3841
    """
    p1 = min(max(base, 1e-9), 1 - 1e-9)
    p2 = min(p1 * (1 + lift), 1 - 1e-9)
    if p2 == p1:
        return 0
    za, zb = _N.inv_cdf(1 - alpha / 2), _N.inv_cdf(power)
    pbar = (p1 + p2) / 2
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (p2 - p1) ** 2)


@dataclass(frozen=True, slots=True)
class Comparison:
    """Arm b (a variant, or the journey's emails) against arm a (control, or the holdout)."""

    k_a: int
    n_a: int
    k_b: int
    n_b: int
    rate_a: float
    rate_b: float
    diff: float  # rate_b - rate_a, absolute
    lift: float | None  # rate_b / rate_a - 1; None when rate_a is 0
    z: float
    p_value: float
    prob_beat: float
    enough: bool  # both arms have at least the minimum sample
    needed: int  # each arm's sample for a 20% relative lift at rate_a (0: unknown)


def compare(k_a: int, n_a: int, k_b: int, n_b: int, *, min_sample: int) -> Comparison:
    rate_a = k_a / n_a if n_a else 0.0
    rate_b = k_b / n_b if n_b else 0.0
    z, p = two_proportion_p(k_a, n_a, k_b, n_b)
    return Comparison(
        k_a, n_a, k_b, n_b, rate_a, rate_b, rate_b - rate_a,
        rate_b / rate_a - 1 if rate_a else None, z, p, prob_beat(k_a, n_a, k_b, n_b),
        min(n_a, n_b) >= min_sample,
        sample_size(rate_a, 0.2) if 0 < rate_a < 1 else 0)


PEEKING = ("p-values assume one look at a sample size fixed in advance: checking every day "
           "and stopping at the first p < 0.05 inflates false positives several times over. "
           "Fix the sample size first ('needed' is each arm's for a 20% relative lift).")
