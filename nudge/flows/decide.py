"""Decide: one place where every shard's decisions meet, in event-time order.

Shards reach stages independently and at different speeds. Decide buffers their decisions
until every shard's watermark has passed them, then releases them sorted by
(due, customer, trigger, stage): the decision log and the send order are then the same
whatever the worker count, batching or pacing.

It also keeps what needs every shard, or comes from outside the shop's event stream:

- the product catalog (nudge/scoring/catalog.py), fed by the catalog's parse step
  (nudge/flows/catalog.py) with updates and each catalog partition's watermark. A decision is
  released only once the catalog's watermark has passed its due time too, and every update
  at or before its due time is applied before it, none after: what it shows of a product is
  a function of event time alone. Products a customer viewed (`viewed`) and recommendations
  come from the catalog, never from events: one customer's events cannot change what
  another is shown. Without a catalog, emails show neither.
- the item model of nudge/scoring/recommend.py (with a catalog and recommendations on), fed
  by the shards' hourly ItemDeltas: before a decision is released, every delta of a bucket
  that ended at or before its due time is applied, in (bucket end, shard) order, and no
  later one.

Item shapes in and out of the step (see nudge/flows/dataflow.py):
    in:  ("decide", DecideInput | CatalogChunk)   a shard batch's decisions, item deltas and
                                                 watermark mark; or a catalog chunk
    out: ("decide", Decision)
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
from collections.abc import Collection
from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.core import metrics
from nudge.core.events import Product
from nudge.core.journeyconfig import RecommendConfig
from nudge.core.records import OUTCOME_SENT, Decision
from nudge.core.snapshot import check, stamp
from nudge.core.timefmt import least_watermark
from nudge.flows.catalog import CatalogChunk
from nudge.scoring.catalog import DEFAULT_MAX_PRODUCTS, Catalog, CatalogEntry
from nudge.scoring.itemstats import ItemDelta
from nudge.scoring.recommend import ItemModel
from nudge.state.outputs import DecideInput

log = logging.getLogger(__name__)
DECIDE_KEY = "decide"
SNAPSHOT_FORMAT = 1  # pending decisions, marks, deltas, item model, catalog (core/snapshot.py)
DecideInputs = DecideInput | CatalogChunk  # what reaches decide: from the shards, the catalog
MAX_VIEWED = 4  # viewed products an email shows


def _line(e: CatalogEntry) -> Product:
    return Product(e.product_id, e.title, e.current_price, 1, e.product_type, e.image_link,
                    e.link)


_LINES_MAX = 65_536


class _Lines:
    """Catalog entries as email lines, kept per product while its entry stays the same
    object (Catalog.get returns the one it decoded until the product changes)."""

    def __init__(self) -> None:
        self.lines: dict[str, tuple[CatalogEntry, Product]] = {}

    def __call__(self, e: CatalogEntry) -> Product:
        hit = self.lines.get(e.product_id)
        if hit is not None and hit[0] is e:
            return hit[1]
        line = _line(e)
        if len(self.lines) >= _LINES_MAX:
            self.lines.clear()
        self.lines[e.product_id] = (e, line)
        return line


class Decider:
    """Pure buffer-and-release logic, tested without Bytewax."""

    def __init__(self, shards: int, recommend: RecommendConfig | None = None,
                 resume: dict[str, Any] | None = None, *, catalog: bool = False,
                 max_products: int = DEFAULT_MAX_PRODUCTS) -> None:
        snap = check("decide", resume, SNAPSHOT_FORMAT) if resume is not None else None
        self.shards = shards
        self.pending: list[Decision] = list(snap["pending"]) if snap else []
        self._lines = _Lines()
        self.marks: dict[int, tuple[int | None, bool]] = {
            int(k): (v[0], v[1]) for k, v in snap["marks"].items()} if snap else {}
        # heap: (end, shard, seq, d)
        self.deltas: list[tuple[int, int, int, ItemDelta]] = list(snap["deltas"]) if snap else []
        self.seq: int = snap["seq"] if snap else 0
        # The catalog, and its partitions' watermarks: part -> (watermark, ended).
        cat = snap.get("catalog") if snap else None
        self.catalog = Catalog(max_products, resume=cat["state"] if cat else None) \
            if catalog else None
        self.cat_marks: dict[str, tuple[int | None, bool]] = {
            k: (v[0], v[1]) for k, v in cat["marks"].items()} if catalog and cat else {}
        self.cat_parts: int = cat["parts"] if catalog and cat else 0
        # Recommendations need the catalog: without it nothing crosses customers.
        self.recommend = recommend if recommend is not None and recommend.enabled \
            and catalog else None
        self.items: ItemModel | None = None
        if self.recommend is not None:
            r = self.recommend
            self.items = ItemModel(half_life_ms=r.half_life, neighbours=r.neighbours,
                                   trending_days=r.trending_days,
                                   resume=snap["items"] if snap else None)

    def watermark(self) -> tuple[int | None, bool]:
        """(watermark, all inputs ended) over every shard and every catalog partition."""
        wm, final = self._shards_watermark()
        if self.catalog is None:
            return wm, final
        cwm, cfinal = self._catalog_watermark()
        if cfinal:
            return wm, final  # the catalog ended: it holds nothing back
        if cwm is None:
            return None, False
        if final:
            return cwm, False
        return (None, False) if wm is None else (min(wm, cwm), False)

    def _catalog_watermark(self) -> tuple[int | None, bool]:
        return _over(self.cat_marks.values(), self.cat_parts)

    def _shards_watermark(self) -> tuple[int | None, bool]:
        return _over(self.marks.values(), self.shards)

    def feed(self, batches: list[DecideInputs]) -> list[Decision]:
        for batch in batches:
            if isinstance(batch, CatalogChunk):
                self._catalog_chunk(batch)
                continue
            if batch.decisions:
                self.pending.extend(batch.decisions)
            if batch.deltas and self.items is not None:
                for delta in batch.deltas:
                    self.seq += 1
                    heapq.heappush(self.deltas, (delta.bucket_end, delta.shard, self.seq, delta))
            if batch.mark is not None:
                mark = batch.mark
                self.marks[mark.shard] = (mark.watermark, mark.final)
        return self.release()

    def _catalog_chunk(self, chunk: CatalogChunk) -> None:
        if self.catalog is None:
            return
        for u in chunk.updates:
            self.catalog.add(u)
        self.cat_parts = chunk.n_parts
        prev = self.cat_marks.get(chunk.part)
        wm = chunk.watermark
        if prev is not None and prev[0] is not None and (wm is None or wm < prev[0]):
            wm = prev[0]
        self.cat_marks[chunk.part] = (wm, chunk.final or (prev is not None and prev[1]))

    def release(self, everything: bool = False) -> list[Decision]:
        wm, final = self.watermark()
        ready: list[Decision] = []
        if not self.pending:
            pass
        elif everything or final:
            ready, self.pending = self.pending, []
        elif wm is not None:
            ready = [d for d in self.pending if d.due < wm]
            if ready:
                self.pending = [d for d in self.pending if d.due >= wm]
        ready.sort(key=Decision.sort_key)
        if self.catalog is not None:
            ready = [self._enrich(d) for d in ready]
            # Every decision due before the watermark has arrived: catalog updates and
            # deltas of buckets ended by then are applied now, so they never pile up while
            # no decision comes.
            if wm is not None and not (everything or final):
                self.catalog.advance(wm - 1)
                if self.items is not None:
                    self._apply_until(wm)
        return ready

    def _apply_until(self, t: int) -> None:
        """Apply every delta of a bucket ended by `t`. Called only once every shard passed
        `t`, so no delta of such a bucket can still come: the model may seal up to `t`."""
        assert self.items is not None
        deltas = self.deltas
        while deltas and deltas[0][0] <= t:
            self.items.apply(heapq.heappop(deltas)[3])
        self.items.seal(t)

    def _enrich(self, d: Decision) -> Decision:
        """What the customer is shown of products beyond their own cart, from the catalog as
        of the decision's due time."""
        catalog = self.catalog
        assert catalog is not None
        catalog.advance(d.due)
        items = self.items
        if items is not None:
            self._apply_until(d.due)
        ctx = d.context
        if d.outcome != OUTCOME_SENT or ctx is None:
            return d
        viewed: list[CatalogEntry] = []
        for pid in ctx.recent:
            entry = catalog.get(pid)
            if entry is not None:
                viewed.append(entry)
                if len(viewed) >= MAX_VIEWED:
                    break
        recs: list[CatalogEntry] = []
        if items is not None and self.recommend is not None:
            seeds = [*ctx.recent, *(line.product_id for line in ctx.cart), *ctx.bought]
            exclude = {line.product_id for line in ctx.cart} | set(ctx.bought)
            for pid in items.recommend(seeds, exclude, ctx.preferred_category,
                                       k=self.recommend.count, directory=catalog):
                entry = catalog.get(pid)
                if entry is not None:
                    recs.append(entry)
        return dataclasses.replace(d, context=dataclasses.replace(
            ctx, viewed=tuple(map(self._lines, viewed)),
            recommendations=tuple(map(self._lines, recs))))

    def snapshot(self) -> dict[str, Any]:
        cat = self.catalog
        return stamp(SNAPSHOT_FORMAT, {
            "pending": list(self.pending), "marks": dict(self.marks),
            "deltas": list(self.deltas), "seq": self.seq,
            "items": self.items.snapshot() if self.items is not None else None,
            "catalog": None if cat is None else {
                "state": cat.snapshot(), "marks": dict(self.cat_marks),
                "parts": self.cat_parts}})


class DecideLogic(StatefulBatchLogic[DecideInputs, Decision, dict[str, Any]]):
    def __init__(self, shards: int, recommend: RecommendConfig | None,
                 resume: dict[str, Any] | None, *, catalog: bool = False,
                 max_products: int = DEFAULT_MAX_PRODUCTS) -> None:
        self.decider = Decider(shards, recommend, resume, catalog=catalog,
                               max_products=max_products)

    def on_batch(self, values: list[DecideInputs]) -> tuple[list[Decision], bool]:
        cat = self.decider.catalog
        refused = cat.refused if cat is not None else 0
        out = self.decider.feed(values)
        if cat is not None and cat.refused != refused:
            metrics.CATALOG_REFUSED.inc(cat.refused - refused)
            log.warning("catalog full (catalog.max_products = %d): %d updates of new products "
                        "refused so far", cat.max_products, cat.refused)
        return out, False

    def on_eof(self) -> tuple[list[Decision], bool]:
        # Inputs ended: nothing can still arrive below any pending decision's due time.
        return self.decider.release(everything=True), False

    def snapshot(self) -> dict[str, Any]:
        return self.decider.snapshot()


def _over(marks: Collection[tuple[int | None, bool]], inputs: int) -> tuple[int | None, bool]:
    """(watermark, all ended) from the last (watermark, ended) mark of each of `inputs`
    inputs: None until every input has sent one."""
    if not inputs or len(marks) < inputs:
        return None, False
    ended = sum(1 for _, final in marks if final)
    if ended == len(marks):
        return None, True
    values = [wm for wm, final in marks if not final and wm is not None]
    return least_watermark(inputs, ended, values), False
