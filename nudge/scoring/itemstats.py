"""What shards learn about items, one bucket of event time at a time (see recommend.py).

Every shard sees only its own customers, so it cannot keep item-to-item statistics alone. It
counts what its customers did in each bucket of event time (an hour by default) and sends the
bucket's ItemDelta to the single decide step once the bucket is over; the decide step's
ItemModel adds up the deltas of every shard. Pair weights and counts merge additively, so the
sum is the same whatever the shard count or the split of customers.

Weights are binary fractions by default (1, 2, 4) so that sums of them are exact floats: the
model then holds the same bits whatever way the increments were grouped into deltas (weights
that are not binary fractions, 0.1, sum to within an ulp).

Deltas carry product ids and counts only, never what an event said a product is called or
where it links: event producers are untrusted, and what emails show of a product comes from
the shop's catalog (nudge/scoring/catalog.py).

>>> b = ItemStatsBuilder(shard=0)
>>> b.on_view(1_000, Item("sku-1"), session_items=[])
>>> b.on_view(2_000, Item("sku-2"), session_items=["sku-1"])
>>> b.flush(until=HOUR - 1)     # the bucket [0, 1 h) is not over yet
[]
>>> [d] = b.flush(until=HOUR)
>>> d.bucket_end, d.pairs, d.views
(3600000, {('sku-1', 'sku-2'): 1.0}, {'sku-1': 1, 'sku-2': 1})
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from nudge.core.snapshot import check, stamp
from nudge.core.timefmt import HOUR

SNAPSHOT_FORMAT = 2  # 2: no product info from events


class ProductLike(Protocol):
    """Anything with a product id: nudge.core.records.Product, Item."""

    @property
    def product_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Item:
    """A bare product id (tests and doctests)."""

    product_id: str


@dataclass(frozen=True, slots=True)
class ItemDelta:
    """What one shard learned about items in the bucket of event time ending at `bucket_end`.

    pairs: co-occurrence increments keyed (a, b) with a < b; views, adds, purchases: counts
    per product."""

    bucket_end: int
    shard: int
    pairs: dict[tuple[str, str], float]
    views: dict[str, int]
    adds: dict[str, int]
    purchases: dict[str, int]

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled on the way to the decide step and in its snapshots while it waits there:
        # zlib'd JSON is several times smaller than the pickled dicts.
        return (_unpickle_delta, (zlib.compress(orjson.dumps(self.to_data()), 1),))

    def sort_key(self) -> tuple[int, int]:
        """The order ItemModel.apply takes deltas in."""
        return (self.bucket_end, self.shard)

    def to_data(self) -> list[Any]:
        """Plain data (lists, dicts, str, numbers) for snapshots."""
        return [self.bucket_end, self.shard, [[a, b, w] for (a, b), w in self.pairs.items()],
                self.views, self.adds, self.purchases]

    @classmethod
    def from_data(cls, data: Sequence[Any]) -> ItemDelta:
        end, shard, pairs, views, adds, purchases = data
        intern = sys.intern
        return cls(end, shard, {(intern(a), intern(b)): w for a, b, w in pairs},
                   {intern(p): n for p, n in views.items()},
                   {intern(p): n for p, n in adds.items()},
                   {intern(p): n for p, n in purchases.items()})


def _unpickle_delta(blob: bytes) -> ItemDelta:
    return ItemDelta.from_data(orjson.loads(zlib.decompress(blob)))


class ItemStatsBuilder:
    """One per shard: counts item events per bucket of event time, in event-time order.

    A bucket is [k * bucket_ms, (k + 1) * bucket_ms): an event exactly on a boundary belongs
    to the next bucket. An event in a later bucket closes the current one; `flush(until)`
    hands out every closed bucket that ended at or before `until` (the shard's watermark: no
    event below it can still come). Feeding an event older than the current bucket, or than
    a bucket already flushed, raises ValueError: the shard's order guarantees it never does.

    view_weight: a co-view (two products viewed in one session); view_buy_weight: a product
    viewed in the session of an order with a product it bought; buy_weight: two products in
    one order. session_window and order_window bound the pairs one event adds (the most recent
    distinct session items; the first distinct order lines).
    """

    def __init__(self, shard: int, bucket_ms: int = HOUR, *, view_weight: float = 1.0,
                 view_buy_weight: float = 2.0, buy_weight: float = 4.0,
                 session_window: int = 10, order_window: int = 20,
                 resume: dict[str, Any] | None = None) -> None:
        """`resume`: a snapshot() to start from (nudge/core/snapshot.py)."""
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive, not {bucket_ms}")
        self.shard = shard
        self.bucket_ms = bucket_ms
        self.view_weight = view_weight
        self.view_buy_weight = view_buy_weight
        self.buy_weight = buy_weight
        self.session_window = session_window
        self.order_window = order_window
        self._k: int | None = None  # the open bucket's index, None when nothing is open
        self._low = -sys.maxsize  # the end of the last closed bucket: no event may be older
        self._closed: list[ItemDelta] = []
        self._reset()
        if resume is not None:
            self._restore(resume)

    def _reset(self) -> None:
        self._pairs: dict[tuple[str, str], float] = {}
        self._views: dict[str, int] = {}
        self._adds: dict[str, int] = {}
        self._purchases: dict[str, int] = {}

    # -- events ---------------------------------------------------------------------------

    def on_view(self, ts: int, product: ProductLike, session_items: Sequence[str]) -> None:
        """A product view; session_items: the customer's other product ids viewed in the same
        session, most recent last (the caller keeps sessions)."""
        self._at(ts)
        pid = self._note(product)
        self._views[pid] = self._views.get(pid, 0) + 1
        if self.view_weight:
            for other in self._recent(session_items, {pid}):
                self._pair(pid, other, self.view_weight)

    def on_add(self, ts: int, product: ProductLike) -> None:
        self._at(ts)
        pid = self._note(product)
        self._adds[pid] = self._adds.get(pid, 0) + 1

    def on_order(self, ts: int, products: Iterable[ProductLike],
                 session_items: Sequence[str]) -> None:
        """An order: one purchase per distinct product (not per unit: ten pairs of socks are
        one purchase of socks), co-bought pairs among them, view-then-buy pairs with the
        session's other viewed products."""
        self._at(ts)
        bought: list[str] = []
        for p in products:
            pid = self._note(p)
            if pid not in bought:
                bought.append(pid)
                self._purchases[pid] = self._purchases.get(pid, 0) + 1
        head = bought[:self.order_window]
        if self.buy_weight:
            for i, a in enumerate(head):
                for b in head[i + 1:]:
                    self._pair(a, b, self.buy_weight)
        if self.view_buy_weight:
            viewed = self._recent(session_items, set(bought))
            for a in head:
                for v in viewed:
                    self._pair(a, v, self.view_buy_weight)

    def _at(self, ts: int) -> None:
        k = ts // self.bucket_ms
        if k == self._k:
            return
        if self._k is None:
            if ts < self._low:
                raise ValueError(f"shard {self.shard}: event at {ts} is before {self._low}, "
                                 "a bucket already closed")
        elif k > self._k:
            self._close()
        else:
            raise ValueError(f"shard {self.shard}: event at {ts} is older than the open "
                             f"bucket starting at {self._k * self.bucket_ms}")
        self._k = k

    @staticmethod
    def _note(product: ProductLike) -> str:
        # Interned ids: every delta, pair key and snapshot then shares one string per product.
        return sys.intern(product.product_id)

    def _recent(self, items: Sequence[str], skip: set[str]) -> list[str]:
        """The most recent distinct items not in `skip`, at most session_window of them."""
        out: list[str] = []
        for item in reversed(items):
            if item not in skip and item not in out:
                out.append(sys.intern(item))
                if len(out) >= self.session_window:
                    break
        return out

    def _pair(self, a: str, b: str, w: float) -> None:
        key = (a, b) if a < b else (b, a)
        self._pairs[key] = self._pairs.get(key, 0.0) + w

    # -- buckets ----------------------------------------------------------------------------

    def _open_delta(self) -> ItemDelta:
        assert self._k is not None
        return ItemDelta((self._k + 1) * self.bucket_ms, self.shard, self._pairs, self._views,
                         self._adds, self._purchases)

    def _close(self) -> None:
        delta = self._open_delta()
        self._closed.append(delta)
        self._low = delta.bucket_end
        self._k = None
        self._reset()

    def flush(self, until: int) -> list[ItemDelta]:
        """The deltas of every bucket that ended at or before `until`, in bucket order."""
        if self._k is not None and (self._k + 1) * self.bucket_ms <= until:
            self._close()
        closed = self._closed
        n = 0
        while n < len(closed) and closed[n].bucket_end <= until:
            n += 1
        out, self._closed = closed[:n], closed[n:]
        return out

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data. The open bucket changes with every event, so it is written at every
        epoch: as zlib'd JSON it is smaller than pickled lists. orjson writes floats
        exactly; parse admits no lone surrogate."""
        state = [self._open_delta().to_data() if self._k is not None else None,
                 [d.to_data() for d in self._closed]]
        return stamp(SNAPSHOT_FORMAT, {"bucket_ms": self.bucket_ms, "low": self._low,
                                       "state": zlib.compress(orjson.dumps(state), 1)})

    def _restore(self, resume: dict[str, Any]) -> None:
        snap = check(f"customers (the item statistics of shard {self.shard})", resume,
                     SNAPSHOT_FORMAT)
        if snap["bucket_ms"] != self.bucket_ms:
            raise ValueError(f"item stats snapshot has buckets of {snap['bucket_ms']} ms, "
                             f"not {self.bucket_ms}: let the open bucket close first")
        self._low = snap["low"]
        open_bucket, closed = orjson.loads(zlib.decompress(snap["state"]))
        self._closed = [ItemDelta.from_data(d) for d in closed]
        self._reset()
        self._k = None
        if open_bucket is not None:
            d = ItemDelta.from_data(open_bucket)
            self._k = d.bucket_end // self.bucket_ms - 1
            self._pairs, self._views, self._adds = dict(d.pairs), dict(d.views), dict(d.adds)
            self._purchases = dict(d.purchases)
