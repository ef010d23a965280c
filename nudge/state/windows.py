"""Bucketed windowed counters in event time: compact, no per-event lists.

A series is a flat list `[bucket, value, bucket, value, ...]` with buckets ascending; a
bucket is `ts // width`. Old buckets are pruned as new ones arrive, so a series never holds
more than `keep` buckets. Rolling sums are exact to the bucket: the 1-day windows use hour
buckets, the longer ones day buckets (README "Windowed counters").

>>> s = []
>>> bump(s, 10, 1.0, keep=30)
>>> bump(s, 10, 2.0, keep=30)
>>> bump(s, 12, 1.0, keep=30)
>>> s
[10, 3.0, 12, 1.0]
>>> window_sum(s, now_bucket=12, width=2)   # buckets 11 and 12
1.0
>>> window_sum(s, now_bucket=12, width=3)   # buckets 10..12
4.0
>>> next_expiry(s, now_bucket=12, width=3)  # bucket 10 leaves the 3-bucket window at 13
13
>>> bump(s, 45, 1.0, keep=30)               # bucket 10 and 12 fall out of a 30-bucket keep
>>> s
[45, 1.0]
"""

from __future__ import annotations

from nudge.core.timefmt import DAY, HOUR


def bump(series: list, bucket: int, amount: int | float, keep: int) -> None:
    """Add `amount` to `bucket`, then drop buckets older than `keep` buckets before it."""
    n = len(series)
    if n and series[n - 2] == bucket:
        series[n - 1] += amount
    elif not n or series[n - 2] < bucket:
        series.append(bucket)
        series.append(amount)
    else:
        # An older bucket (a late event within the allowed lateness): find its place.
        for i in range(0, n, 2):
            if series[i] == bucket:
                series[i + 1] += amount
                return
            if series[i] > bucket:
                series[i:i] = [bucket, amount]
                return
        return
    oldest = bucket - keep
    if series[0] <= oldest:
        i = 0
        while i < len(series) and series[i] <= oldest:
            i += 2
        del series[:i]


def window_sum(series: list, now_bucket: int, width: int) -> float:
    """Sum of the buckets in (now_bucket - width, now_bucket]."""
    lo = now_bucket - width
    total = 0.0
    for i in range(len(series) - 2, -1, -2):
        b = series[i]
        if b <= lo:
            break
        if b <= now_bucket:
            total += series[i + 1]
    return total


def next_expiry(series: list, now_bucket: int, width: int) -> int | None:
    """The first bucket at which window_sum(series, ., width) loses a bucket it counts at
    `now_bucket`, or None: when the oldest counted bucket b leaves, at b + width."""
    lo = now_bucket - width
    for i in range(0, len(series), 2):
        b = series[i]
        if lo < b <= now_bucket and series[i + 1]:
            return int(b + width)
    return None


def last_bucket(series: list) -> int:
    return series[-2] if series else -1


def hour(ts: int) -> int:
    return ts // HOUR


def day(ts: int) -> int:
    return ts // DAY
