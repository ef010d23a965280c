"""The product catalog: the shop's own feed of products, the one trusted source of what an
email shows about a product that did not come from the recipient's own events.

Event producers are untrusted: a `Product Viewed` may carry any name, URL or image. Shared
product data (recommendations, trending, a customer's viewed products) therefore comes from
here, fed by the shop the way it feeds an ESP (nudge/scoring/catalogfeed.py: a compacted
Kafka topic keyed by product id, or JSONL / Google Merchant CSV files).

Event time. Every update carries an event time (its `updated_at`, or the Kafka message's
timestamp; 0 when the feed gives none: known from the start). Updates wait in `pending` and
are applied by `advance(t)` in (time, product id, source position) order, so the catalog a
decision due at t reads holds exactly the updates at or before t, whatever the batching,
worker count or crash-and-resume (the decide step, nudge/flows/decide.py, snapshots it).

Memory. An entry is kept as one compact bytes value (JSON of its fields) in a dict keyed
by product id, plus the product's category for the recommendable ones: about 400 bytes of
RSS per product with a feed's typical titles and URLs (`make bench` measures 1M products),
and its share of the snapshot below.

Snapshots. The decide step is snapshotted every epoch, and a catalog of a million products
pickled afresh each time would take seconds. Products are split into SEGMENTS by a hash of
their id; each segment's snapshot form (pickled, zlib-compressed: URLs compress well) is kept
and rebuilt only when one of its products changed since the last snapshot, so a snapshot of
a catalog that changes a little costs a little, and the bytes Bytewax pickles are a list of
SEGMENTS blobs. At most
`max_products` products are kept (the documented cap, `catalog.max_products`): an update
for a new product beyond it is refused and counted (`refused`) while products already known
keep updating; a removal frees its place.

>>> cat = Catalog()
>>> cat.add(CatalogUpdate("sku-1", 1_000, CatalogEntry("sku-1", "Linen Shirt", 49.0, 39.0,
...     "in_stock", "https://shop.example/p/sku-1", "", "apparel", "Acme", 1_000), "f", 1))
>>> cat.get("sku-1") is None   # not before its event time
True
>>> cat.advance(1_000)
1
>>> entry = cat.get("sku-1")
>>> entry.title, entry.current_price, cat.category("sku-1")
('Linen Shirt', 39.0, 'apparel')
"""

from __future__ import annotations

import heapq
import pickle
import sys
import zlib
from dataclasses import dataclass
from typing import Any

import orjson

from nudge.core.snapshot import check, stamp

SNAPSHOT_FORMAT = 2  # 2: segments
SEGMENTS = 256
DEFAULT_MAX_PRODUCTS = 1_000_000
DECODED_MAX = 65_536  # decoded entries kept for reading (Catalog.get)
IN_STOCK = "in_stock"
AVAILABILITY = (IN_STOCK, "out_of_stock", "preorder", "backorder")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One product as the shop's feed describes it (Google Merchant feed fields)."""

    product_id: str
    title: str
    price: float
    sale_price: float | None
    availability: str  # one of AVAILABILITY
    link: str
    image_link: str
    product_type: str  # the category recommendations group by
    brand: str
    updated: int  # event time (ms) of the update that set it

    @property
    def current_price(self) -> float:
        """What the product costs now: the sale price while there is one."""
        return self.sale_price if self.sale_price is not None else self.price

    @property
    def in_stock(self) -> bool:
        return self.availability == IN_STOCK

    def encode(self) -> bytes:
        # A copy: orjson's own bytes object keeps a 4 KiB buffer whatever its length
        # (measured: ~4.1 KB against ~250 B a product).
        return memoryview(orjson.dumps([
            self.title, self.price, self.sale_price, self.availability, self.link,
            self.image_link, self.product_type, self.brand, self.updated])).tobytes()

    @classmethod
    def decode(cls, product_id: str, data: bytes) -> CatalogEntry:
        title, price, sale, avail, link, image, ptype, brand, updated = orjson.loads(data)
        return cls(product_id, title, float(price), None if sale is None else float(sale),
                   avail, link, image, ptype, brand, updated)


@dataclass(frozen=True, slots=True)
class CatalogUpdate:
    """A product set (entry) or removed (entry None) at event time `ts`, read at a source
    position (partition key, offset): the tie-break between updates of one instant."""

    product_id: str
    ts: int
    entry: CatalogEntry | None
    part: str
    offset: int

    def order(self) -> tuple[int, str, str, int]:
        return (self.ts, self.product_id, self.part, self.offset)

    def at(self, ts: int) -> CatalogUpdate:
        """The update applied later than it happened (a late record, raised to the
        watermark like a late event)."""
        return CatalogUpdate(self.product_id, ts, self.entry, self.part, self.offset)

    def to_data(self) -> list[Any]:
        e = self.entry
        return [self.product_id, self.ts, self.part, self.offset,
                None if e is None else e.encode()]

    @classmethod
    def from_data(cls, data: list[Any]) -> CatalogUpdate:
        pid, ts, part, offset, blob = data
        entry = None if blob is None else CatalogEntry.decode(pid, blob)
        return cls(pid, ts, entry, part, offset)


class Catalog:
    """The catalog as of an event time, with the updates still ahead of it."""

    def __init__(self, max_products: int = DEFAULT_MAX_PRODUCTS,
                 resume: dict[str, Any] | None = None) -> None:
        """`resume`: a snapshot() to start from (nudge/core/snapshot.py)."""
        if max_products < 1:
            raise ValueError("max_products must be positive")
        self.max_products = max_products
        # product id -> encoded entry, one dict per segment (see "Snapshots" above)
        self.segments: list[dict[str, bytes]] = [{} for _ in range(SEGMENTS)]
        self.count = 0
        self.categories: dict[str, str] = {}  # in-stock product -> product_type
        self.pending: list[tuple[tuple[int, str, str, int], CatalogUpdate]] = []
        self.at = -(2 ** 62)  # every update at or before this is applied
        self.refused = 0  # updates for new products refused at the cap
        self.version = 0  # moves whenever an entry changes (caches key on it)
        self._blobs: list[bytes | None] = [None] * SEGMENTS  # snapshot forms, None: stale
        # product id -> (its encoded entry, decoded): emails show the same products again
        # and again, and a decode took ~10 us. Checked against the entry it was decoded
        # from, so an update is never missed.
        self._decoded: dict[str, tuple[bytes, CatalogEntry]] = {}
        if resume is not None:
            self._restore(check("decide (its catalogue)", resume, SNAPSHOT_FORMAT))

    def add(self, update: CatalogUpdate) -> None:
        """An update to apply once event time reaches it. The caller raises a late update to
        its source's watermark first, so none comes at or before `at`."""
        if update.ts <= self.at:
            update = update.at(self.at + 1)
        heapq.heappush(self.pending, (update.order(), update))

    def advance(self, t: int) -> int:
        """Apply every pending update at or before `t`, in event-time order; returns how
        many changed an entry."""
        pending = self.pending
        changed = 0
        while pending and pending[0][0][0] <= t:
            changed += self._apply(heapq.heappop(pending)[1])
        self.at = max(self.at, t)
        if changed:
            self.version += 1
        return changed

    def _apply(self, u: CatalogUpdate) -> int:
        pid = u.product_id
        e = u.entry
        seg = _segment(pid)
        entries = self.segments[seg]
        if e is None:
            if entries.pop(pid, None) is None:
                return 0
            self.count -= 1
            self.categories.pop(pid, None)
            self._blobs[seg] = None
            return 1
        if pid not in entries:
            if self.count >= self.max_products:
                self.refused += 1
                return 0
            self.count += 1
        entries[pid] = e.encode()
        self._blobs[seg] = None
        if e.in_stock:
            self.categories[pid] = sys.intern(e.product_type)
        else:
            self.categories.pop(pid, None)
        return 1

    # -- reading ------------------------------------------------------------------------

    def get(self, product_id: str) -> CatalogEntry | None:
        """The product as of `at` (price, sale price, availability, ...), or None."""
        data = self.segments[_segment(product_id)].get(product_id)
        if data is None:
            return None
        hit = self._decoded.get(product_id)
        if hit is not None and hit[0] is data:
            return hit[1]
        entry = CatalogEntry.decode(product_id, data)
        if len(self._decoded) >= DECODED_MAX:
            self._decoded.clear()
        self._decoded[product_id] = (data, entry)
        return entry

    def category(self, product_id: str) -> str | None:
        """The product's category if it may be recommended (known and in stock), else None."""
        return self.categories.get(product_id)

    def __len__(self) -> int:
        return self.count

    def __contains__(self, product_id: object) -> bool:
        return isinstance(product_id, str) and \
            product_id in self.segments[_segment(product_id)]

    def products(self) -> dict[str, bytes]:
        """Every product id and its encoded entry (tests, tools): a new dict."""
        out: dict[str, bytes] = {}
        for entries in self.segments:
            out.update(entries)
        return out

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data: the segments' blobs (rebuilt where stale), the pending updates."""
        blobs = self._blobs
        for i, blob in enumerate(blobs):
            if blob is None:
                blobs[i] = zlib.compress(pickle.dumps(self.segments[i],
                                                      pickle.HIGHEST_PROTOCOL), 1)
        return stamp(SNAPSHOT_FORMAT, {
            "segments": list(blobs), "at": self.at,
            "pending": [u.to_data() for _, u in sorted(self.pending)],
            "refused": self.refused, "version": self.version})

    def _restore(self, snap: dict[str, Any]) -> None:
        cat = self
        intern = sys.intern
        for i, blob in enumerate(snap["segments"]):
            entries = cat.segments[i] = pickle.loads(zlib.decompress(blob))
            cat._blobs[i] = blob
            cat.count += len(entries)
            for pid, data in entries.items():
                e = CatalogEntry.decode(pid, data)
                if e.in_stock:
                    cat.categories[pid] = intern(e.product_type)
        cat.at = snap["at"]
        cat.pending = [(u.order(), u) for u in map(CatalogUpdate.from_data, snap["pending"])]
        heapq.heapify(cat.pending)
        cat.refused = snap["refused"]
        cat.version = snap["version"]


def _segment(product_id: str) -> int:
    return zlib.crc32(product_id.encode("utf-8", "surrogatepass")) % SEGMENTS
