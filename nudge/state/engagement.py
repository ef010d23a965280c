"""Engagement: a decayed activity score per customer and its rank among the shard's.

The score is a sum of weighted actions (opens, clicks, sessions, cart adds, orders), each
halving every `half_life` of event time: E(t) = sum w_i * 2^(-(t - t_i)/H). Written as
E(t) = 2^(K - t/H) with K = log2(sum w_i * 2^(t_i/H)), the key K does not depend on t: the
order of customers by their score is the same at every instant, so a shard keeps its
customers' keys in one sorted list and a percentile costs a binary search, with no sweep
over the population as time passes. That is what makes "top 25% / middle 50% / bottom 25%"
cheap and deterministic: each shard holds a uniform hash sample of the customers, and its
ranks are a function of the shard's event-time order alone.

>>> H = 100
>>> k = add(None, 2.0, 0, H)           # weight 2 at t=0
>>> round(score_at(k, 0, H), 6), round(score_at(k, 100, H), 6)
(2.0, 1.0)
>>> k = add(k, 1.0, 100, H)            # weight 1 at t=100: 1 + 1 = 2 then
>>> round(score_at(k, 100, H), 6)
2.0
>>> time_score_reaches(k, 1.0, H)      # halves again one half-life later
200
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right, insort
from collections import Counter
from collections.abc import Iterable
from itertools import chain


def add(key: float | None, weight: float, ts: int, half_life: int) -> float | None:
    """The key after an action of `weight` at `ts`."""
    if weight <= 0:
        return key
    a = math.log2(weight) + ts / half_life
    if key is None:
        return a
    hi, lo = (key, a) if key >= a else (a, key)
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))


def score_at(key: float | None, ts: int, half_life: int) -> float:
    return 0.0 if key is None else float(2.0 ** (key - ts / half_life))


def time_score_reaches(key: float | None, value: float, half_life: int) -> int | None:
    """When the (falling) score reaches `value`; None if it never does."""
    if key is None or value <= 0:
        return None
    return math.ceil(half_life * (key - math.log2(value)))


class EngagementRanks:
    """The sorted keys of a shard's engaged customers; the rest count as the least engaged.

    The keys are an array of doubles, not a list of floats: a binary search over boxed
    floats scattered in the heap missed the cache at every step. When no rule of the
    config reads a percentile (`lazy`), updates are only noted and the keys sorted when
    asked (snapshots, `nudge inspect`): the same keys, without ~1 µs an update.
    """

    __slots__ = ("_gone", "_new", "keys", "lazy")

    def __init__(self, keys: Iterable[float] | None = None, *, lazy: bool = False) -> None:
        self.keys = array("d", sorted(keys) if keys else ())
        self.lazy = lazy
        self._gone: list[float] = []
        self._new: list[float] = []

    def replace(self, old: float | None, new: float | None) -> None:
        if old == new:
            return
        if self.lazy:
            if old is not None:
                self._gone.append(old)
            if new is not None:
                self._new.append(new)
                if len(self._new) > 4 * len(self.keys) + 4096:
                    self._sync()  # bounded memory between snapshots
            return
        keys = self.keys
        if old is not None:
            i = bisect_left(keys, old)
            if i < len(keys) and keys[i] == old:
                del keys[i]
        if new is not None:
            if not keys or new >= keys[-1]:
                keys.append(new)  # the usual case: keys grow with event time
            else:
                insort(keys, new)

    def _sync(self) -> None:
        """The noted updates, as the eager ones would have left the keys: each old key
        removed once (it was added before, maybe since the last sync), the new ones in."""
        if not self._gone and not self._new:
            return
        gone = Counter(self._gone)
        kept = []
        for k in chain(self.keys, self._new):
            if gone[k]:
                gone[k] -= 1
            else:
                kept.append(k)
        kept.sort()
        self.keys = array("d", kept)
        self._gone, self._new = [], []

    def percentile(self, key: float | None, population: int) -> float:
        """Share of `population` less engaged than `key`, ties counting half."""
        if self.lazy:
            self._sync()
        keys = self.keys
        n = max(population, len(keys), 1)
        unengaged = n - len(keys)
        if key is None:
            return 0.5 * unengaged / n
        lo, hi = bisect_left(keys, key), bisect_right(keys, key)
        return (unengaged + lo + 0.5 * (hi - lo)) / n

    def snapshot(self) -> array[float]:
        self._sync()
        return self.keys
