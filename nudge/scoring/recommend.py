"""Recommendations kept in the stream: item-to-item co-occurrence and trending, in event time.

Shards count what their customers do per bucket of event time (ItemStatsBuilder, see
nudge/scoring/itemstats.py) and send ItemDeltas to the single decide step, whose ItemModel adds
them up in (bucket_end, shard) order and answers `recommend()` for the emails it releases.

Decay. A pair's weight halves every `half_life_ms` of event time. Rather than touching every
weight as time passes, weights are stored pre-multiplied by a growth factor
g(t) = 2 ** ((t - shift * half_life) / half_life): an increment at time t is stored as
inc * g(t), so at any one time every stored weight is the true weight times the same g(now)
and rankings need no division. When g would grow past 2**64 every stored weight is scaled
down by a power of two (exact in floating point: no bit of any ranking changes) and `shift`
moves on. `related()` shows true weights.

Determinism. The deltas of one bucket_end are summed apart (`pending`) and folded into the
weights once a later bucket_end arrives, with one multiply by g(bucket_end): with the default
binary-fraction weights those sums are exact, so the weights, and every recommendation, are
the same bits whatever the split of customers into shards (tests/test_recommend.py). Until
then `recommend()` reads the pending sums through the same fold, so it sees every delta
applied. Pruning, forgetting and renormalising happen only at those folds and at new
bucket_ends, never in between, for the same reason.

Pruning. Each product keeps its `neighbours` heaviest neighbours (ties: smaller product id).
Once a day, products not seen for `forget_after_ms` are forgotten (counts, pairs) and pairs
whose decayed weight fell below `min_weight` are dropped: memory stays bounded.

The catalog. The model knows product ids and counts only. What may be recommended, and in
which category, is the caller's `Directory`: the shop's catalog (nudge/scoring/catalog.py),
whose in-stock products map to their category. A product the catalog does not list is
never recommended, whatever the events said about it; without a catalog nothing is.

Trending. Per product, purchases, adds and views (weights 5, 2, 1) summed over the day
buckets of the last `trending_days` days; per category, the products of that category ranked
by it (computed when asked, cached until the next delta or catalog change).

>>> from nudge.core.timefmt import HOUR
>>> shard = ItemStatsBuilder(shard=0)
>>> shard.on_view(1_000, Item("shirt"), session_items=[])
>>> shard.on_view(2_000, Item("belt"), session_items=["shirt"])
>>> shard.on_order(3_000, [Item("mug")], session_items=[])
>>> model = ItemModel()
>>> for delta in shard.flush(until=HOUR):
...     model.apply(delta)
>>> shop = Directory({"shirt": "apparel", "belt": "apparel", "mug": "home"})
>>> model.recommend(["shirt"], exclude=["shirt"], k=2, directory=shop)
['belt', 'mug']
>>> model.recommend(["shirt"], exclude=["belt"], k=1, directory=shop)
['mug']
>>> model.recommend(["shirt"], exclude=["shirt"], k=2, directory=None)
[]
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nudge.core.snapshot import check
from nudge.core.timefmt import DAY
from nudge.scoring.itemcodec import decode_model, encode_model
from nudge.scoring.itemstats import Item, ItemDelta, ItemStatsBuilder

__all__ = ["Directory", "Item", "ItemDelta", "ItemModel", "ItemStatsBuilder"]

SNAPSHOT_FORMAT = 2  # 2: no product info from events
RENORM_AFTER = 64  # half-lives between renormalisations: g stays below 2**65

Row = dict[str, float]


class ProductDirectory(Protocol):
    """What may be recommended: in-stock product -> category. `version` moves whenever the
    mapping changes (nudge.scoring.catalog.Catalog is one)."""

    @property
    def categories(self) -> dict[str, str]: ...
    @property
    def version(self) -> int: ...


@dataclass(slots=True)
class Directory:
    """A fixed ProductDirectory (tests, doctests)."""

    categories: dict[str, str]
    version: int = field(default=0)


class ItemModel:
    """The decide step's global item model: co-occurrence and trending.

    The caller applies deltas in (bucket_end, shard) order (`key=ItemDelta.sort_key`): like
    decisions in nudge/flows/decide.py, a delta waits until every shard's watermark has passed its
    bucket_end, so no shard can still send an earlier one. The attributes are read-only
    outside the class (the snapshot is cached until the next apply).
    """

    def __init__(self, half_life_ms: int = 14 * DAY, neighbours: int = 20,
                 trending_days: int = 7, *,
                 trending_weights: tuple[float, float, float] = (1.0, 2.0, 5.0),
                 forget_after_ms: int = 30 * DAY, min_weight: float = 0.01,
                 max_seeds: int = 10, resume: dict[str, Any] | None = None) -> None:
        """`resume`: a snapshot() to start from (nudge/core/snapshot.py); one taken with
        another half-life is converted."""
        if half_life_ms <= 0 or neighbours < 1 or trending_days < 1:
            raise ValueError("half_life_ms, neighbours and trending_days must be positive")
        self.half_life_ms = half_life_ms
        self.neighbours = neighbours
        self.trending_days = trending_days
        self.trending_weights = trending_weights  # views, adds, purchases
        self.forget_after_ms = forget_after_ms
        self.min_weight = min_weight
        self.max_seeds = max_seeds
        self.rows: dict[str, Row] = {}  # product -> neighbour -> weight * g
        self.pending: dict[str, Row] = {}  # product -> neighbour -> raw sum at `at`
        self.seen: dict[str, int] = {}  # product -> last bucket_end it was in a delta
        self.counts: dict[str, list[int]] = {}  # product -> [day, views, adds, buys, day, ...]
        self.shift = 0
        self.at: int | None = None  # the latest bucket_end applied
        self.sealed = -(2 ** 62)  # no delta may come with a bucket_end at or before this
        self.last_shard = -1
        self.swept_day = -(2 ** 62)
        self._trend: dict[str | None, list[str]] = {}  # cache, cleared by every apply
        self._trend_of: tuple[int, int] | None = None  # (id, version) of its directory
        self._snap: dict[str, Any] | None = None  # cache, cleared by every apply
        self._reads: dict[str, Row] = {}  # pending rows folded for reading; as _snap
        if resume is not None:
            self._restore(resume)

    # -- learning ---------------------------------------------------------------------------

    def apply(self, delta: ItemDelta) -> None:
        """Add one shard's bucket. Deltas must come in (bucket_end, shard) order."""
        end = delta.bucket_end
        if end <= self.sealed:
            raise ValueError(f"delta ({end}, shard {delta.shard}) for a bucket sealed up to "
                             f"{self.sealed}: seal() promised no more of them")
        if self.at is not None and (end, delta.shard) <= (self.at, self.last_shard):
            raise ValueError(f"delta ({end}, shard {delta.shard}) after ({self.at}, shard "
                             f"{self.last_shard}): apply deltas in (bucket_end, shard) order")
        self._reads.clear()  # _fold and _advance change rows
        if self.at is None or end > self.at:
            if self.at is not None:
                self._fold()
            self._advance(end)
            self.at = end
        self.last_shard = delta.shard
        self._snap = None
        self._reads.clear()
        pending = self.pending
        for (a, b), w in delta.pairs.items():
            if a == b:
                continue
            row = pending.get(a)
            if row is None:
                row = pending[a] = {}
            row[b] = row.get(b, 0.0) + w
            row = pending.get(b)
            if row is None:
                row = pending[b] = {}
            row[a] = row.get(a, 0.0) + w
        seen = self.seen
        for a, b in delta.pairs:
            seen[a] = seen[b] = end
        day = (end - 1) // DAY
        for slot, counts in ((1, delta.views), (2, delta.adds), (3, delta.purchases)):
            for pid, n in counts.items():
                seen[pid] = end
                self._bump(pid, day, slot, n)
        self._trend.clear()

    def _bump(self, pid: str, day: int, slot: int, n: int) -> None:
        series = self.counts.get(pid)
        if series is None:
            series = self.counts[pid] = []
        if not series or series[-4] != day:  # days only move forward: apply's order
            series.extend((day, 0, 0, 0))
            while series[0] <= day - self.trending_days:
                del series[:4]
        series[-4 + slot] += n

    def seal(self, t: int) -> None:
        """The caller promises no more deltas with bucket_end <= t: fold the pending sums now,
        as the next bucket would (the same arithmetic, so the same weights), so reads stop
        merging them on every call."""
        if self.at is not None and self.at <= t and self.pending:
            self._fold()
            self._snap = None
            self._reads.clear()
        if self.at is not None and self.at <= t:
            self.sealed = max(self.sealed, t)

    def _growth(self, t: int) -> float:
        h = self.half_life_ms
        return math.ldexp(2.0 ** ((t % h) / h), t // h - self.shift)

    def _merged(self, row: Row | None, fresh: Row, g: float) -> Row:
        """A row with a bucket's raw sums folded in at growth g, pruned to `neighbours`.

        The one definition of a fold: both _fold and the reads of pending rows use it."""
        out = dict(row) if row else {}
        for b, w in fresh.items():
            out[b] = out.get(b, 0.0) + w * g
        if len(out) > self.neighbours:
            # (-weight, id) tuples compare in C: the order of key=_heaviest, ~3x faster
            best = sorted([(-w, b) for b, w in out.items()])[:self.neighbours]
            out = {b: -nw for nw, b in best}
        return out

    def _fold(self) -> None:
        if not self.pending:
            return
        assert self.at is not None
        g = self._growth(self.at)
        rows = self.rows
        for a, fresh in self.pending.items():
            rows[a] = self._merged(rows.get(a), fresh, g)
        self.pending = {}

    def _advance(self, end: int) -> None:
        """Renormalise and sweep at a new bucket_end, before its deltas are added."""
        q = end // self.half_life_ms
        if q - self.shift > RENORM_AFTER:
            d = q - self.shift
            for row in self.rows.values():
                for b, w in row.items():
                    row[b] = math.ldexp(w, -d)  # a power of two: exact
            self.shift = q
        day = (end - 1) // DAY
        if day > self.swept_day:
            self.swept_day = day
            self._sweep(end, day)

    def _sweep(self, end: int, day: int) -> None:
        cutoff = end - self.forget_after_ms
        for pid in [p for p, t in self.seen.items() if t < cutoff]:
            del self.seen[pid]
        known = self.seen
        floor = self.min_weight * self._growth(end)
        for a in list(self.rows):
            row = self.rows[a]
            if a in known:
                for b in [b for b, w in row.items() if w < floor or b not in known]:
                    del row[b]
            if not row or a not in known:
                del self.rows[a]
        oldest = day - self.trending_days
        for pid in list(self.counts):
            series = self.counts[pid]
            while series and series[0] <= oldest:
                del series[:4]
            if not series or pid not in known:
                del self.counts[pid]
        self._trend.clear()

    # -- reading ----------------------------------------------------------------------------

    def _row(self, pid: str) -> Row:
        fresh = self.pending.get(pid)
        if fresh is None:
            return self.rows.get(pid) or {}
        # Decisions often come while their bucket's deltas are still pending: popular
        # products are read again and again until the next apply or fold.
        row = self._reads.get(pid)
        if row is None:
            assert self.at is not None
            row = self._reads[pid] = self._merged(self.rows.get(pid), fresh,
                                                  self._growth(self.at))
        return row

    def related(self, product_id: str) -> list[tuple[str, float]]:
        """The product's neighbours with their weights decayed to now, heaviest first."""
        if self.at is None:
            return []
        g = self._growth(self.at)
        return sorted(((b, w / g) for b, w in self._row(product_id).items()), key=_heaviest)

    def trend_score(self, product_id: str) -> float:
        """Weighted purchases, adds and views over the last `trending_days` days."""
        series = self.counts.get(product_id)
        if not series or self.at is None:
            return 0.0
        oldest = (self.at - 1) // DAY - self.trending_days
        wv, wa, wp = self.trending_weights
        total = 0.0
        for i in range(0, len(series), 4):
            if series[i] > oldest:
                total += wv * series[i + 1] + wa * series[i + 2] + wp * series[i + 3]
        return total

    def _trending_ids(self, category: str | None, directory: ProductDirectory) -> list[str]:
        of = (id(directory), directory.version)
        if of != self._trend_of:
            self._trend.clear()
            self._trend_of = of
        ranked = self._trend.get(category)
        if ranked is None:
            known = directory.categories
            if category is None:
                scored = [(p, self.trend_score(p)) for p in self.counts if p in known]
            else:
                scored = [(p, self.trend_score(p)) for p in self.counts
                          if known.get(p) == category]
            ranked = [p for ns, p in sorted([(-s, p) for p, s in scored]) if ns < 0]
            self._trend[category] = ranked
        return ranked

    def trending(self, directory: ProductDirectory | None, category: str | None = None,
                 k: int = 10) -> list[str]:
        """The top `k` trending products the directory lists, of one category or of all."""
        if directory is None:
            return []
        return self._trending_ids(category, directory)[:k]

    def recommend(self, seeds: Iterable[str], exclude: Iterable[str] = (),
                  preferred_category: str | None = None, k: int = 3, *,
                  directory: ProductDirectory | None) -> list[str]:
        """Up to k product ids for a customer, best first.

        seeds: the customer's recent views, cart items and bought items, most relevant first;
        the r-th distinct seed (from 0) counts 1 / (r + 1), up to `max_seeds` seeds. A
        candidate's score is the weighted sum of its co-occurrence weights with the seeds.
        Never returns a product in `exclude` (cart, bought) or one the directory does not
        list (not in the catalog, or out of stock); without a directory, nothing. A seed that
        is not excluded (a viewed product) may be recommended when the other seeds point at
        it. Short lists are filled from trending in `preferred_category`, then from global
        trending. Ties: smaller product id first.
        """
        if directory is None:
            return []
        excluded = set(exclude)
        known = directory.categories
        scores: dict[str, float] = {}
        used: set[str] = set()
        for seed in seeds:
            if seed in used:
                continue
            if len(used) >= self.max_seeds:
                break
            weight = 1.0 / (len(used) + 1)
            used.add(seed)
            for b, w in self._row(seed).items():
                if b not in excluded and b in known:
                    scores[b] = scores.get(b, 0.0) + weight * w
        out = [p for _, p in heapq.nsmallest(k, [(-w, b) for b, w in scores.items()])]
        if len(out) < k:
            chosen = set(out)
            for category in ((preferred_category, None) if preferred_category else (None,)):
                for p in self._trending_ids(category, directory):
                    if len(out) >= k:
                        break
                    if p not in excluded and p not in chosen:
                        out.append(p)
                        chosen.add(p)
        return out

    def size(self) -> dict[str, int]:
        """Sizes for metrics: products known, stored pairs, pending pairs."""
        return {"products": len(self.seen),
                "pairs": sum(len(r) for r in self.rows.values()),
                "pending": sum(len(r) for r in self.pending.values())}

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data, compact (nudge/scoring/itemcodec.py). Deltas come once a bucket per shard
        while epochs are seconds apart, so the encoding is kept until the next apply."""
        if self._snap is None:
            snap = encode_model(self.rows, self.pending, self.seen, self.counts)
            snap.update(format=SNAPSHOT_FORMAT, half_life_ms=self.half_life_ms,
                        shift=self.shift, at=self.at, last_shard=self.last_shard,
                        swept_day=self.swept_day, sealed=self.sealed)
            self._snap = snap
        return dict(self._snap)

    def _restore(self, resume: dict[str, Any]) -> None:
        """A snapshot taken with another half-life is converted: the true weights are kept
        as of the snapshot's time and decay at the new rate from there."""
        snap = check("decide (its item model)", resume, SNAPSHOT_FORMAT)
        self.rows, self.pending, self.seen, self.counts = decode_model(snap)
        self.shift, self.at = snap["shift"], snap["at"]
        self.last_shard, self.swept_day = snap["last_shard"], snap["swept_day"]
        self.sealed = snap.get("sealed", -(2 ** 62))
        self._trend = {}
        self._trend_of = None
        self._snap = None
        self._reads = {}
        old_h = snap["half_life_ms"]
        if old_h != self.half_life_ms and self.at is not None:
            h, self.half_life_ms = self.half_life_ms, old_h
            g_old = self._growth(self.at)
            self.half_life_ms, self.shift = h, self.at // h
            factor = self._growth(self.at) / g_old
            for row in self.rows.values():
                for b, w in row.items():
                    row[b] = w * factor


def _heaviest(item: tuple[str, float]) -> tuple[float, str]:
    return (-item[1], item[0])
