"""Decide: one place where every shard's decisions meet, in event-time order.

Shards reach stages independently and at different speeds. Decide buffers their decisions
until every shard's watermark has passed them, then releases them sorted by
(due, customer, trigger, stage): the decision log and the send order are then the same
whatever the worker count, batching or pacing.

It also keeps the one view of the catalogue that needs every shard: the item model of
nudge/scoring/recommend.py, fed by the shards' hourly ItemDeltas. Before a decision is released,
every delta of a bucket that ended at or before its due time is applied, in (bucket end,
shard) order, and no later one: a decision's recommendations are a function of the event
time of its due alone, like everything else.

Item shapes in and out of the step (see nudge/flows/dataflow.py):
    in:  ("decide", Decision | ShardMark | ItemDelta)
    out: ("decide", Decision)
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.core.journeyconfig import RecommendConfig
from nudge.core.records import OUTCOME_SENT, CartLine, Decision, ShardMark
from nudge.scoring.itemstats import ItemDelta, ItemInfo
from nudge.scoring.recommend import ItemModel

DECIDE_KEY = "decide"


def _line(info: ItemInfo) -> CartLine:
    return CartLine(info.product_id, info.name, info.price, 1, info.category, info.image_url,
                    info.url)


class Decider:
    """Pure buffer-and-release logic, tested without Bytewax."""

    def __init__(self, shards: int, recommend: RecommendConfig | None = None,
                 resume: dict[str, Any] | None = None) -> None:
        self.shards = shards
        self.pending: list[Decision] = []
        self.marks: dict[int, tuple[int | None, bool]] = {}
        self.deltas: list[tuple[int, int, int, ItemDelta]] = []  # heap: (end, shard, seq, d)
        self.seq = 0
        self.recommend = recommend if recommend is not None and recommend.enabled else None
        self.items: ItemModel | None = None
        if self.recommend is not None:
            r = self.recommend
            self.items = ItemModel(half_life_ms=r.half_life, neighbours=r.neighbours,
                                   trending_days=r.trending_days)
        if resume is not None:
            self.pending = list(resume["pending"])
            self.marks = {int(k): (v[0], v[1]) for k, v in resume["marks"].items()}
            self.deltas = list(resume["deltas"])
            self.seq = resume["seq"]
            if self.items is not None and resume["items"] is not None:
                self.items.restore(resume["items"])

    def watermark(self) -> tuple[int | None, bool]:
        if len(self.marks) < self.shards:
            return None, False
        if all(final for _, final in self.marks.values()):
            return None, True
        values = [wm for wm, final in self.marks.values() if not final and wm is not None]
        if len(values) < sum(1 for _, final in self.marks.values() if not final):
            return None, False
        return min(values), False

    def feed(self, items: list[Any]) -> list[Decision]:
        for item in items:
            if isinstance(item, ShardMark):
                self.marks[item.shard] = (item.watermark, item.final)
            elif isinstance(item, ItemDelta):
                if self.items is not None:
                    self.seq += 1
                    heapq.heappush(self.deltas, (item.bucket_end, item.shard, self.seq, item))
            else:
                self.pending.append(item)
        return self.release()

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
        if self.items is not None:
            ready = [self._enrich(d) for d in ready]
            # Every decision due before the watermark has arrived: deltas of buckets ended by
            # then are applied now, so they never pile up while no decision comes.
            if wm is not None and not (everything or final):
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
        items = self.items
        assert items is not None and self.recommend is not None
        self._apply_until(d.due)
        ctx = d.context
        if d.outcome != OUTCOME_SENT or ctx is None:
            return d
        seeds = [*ctx.recent, *(line.product_id for line in ctx.cart), *ctx.bought]
        exclude = {line.product_id for line in ctx.cart} | set(ctx.bought)
        recs = items.recommend(seeds, exclude, ctx.preferred_category, k=self.recommend.count)
        viewed = [info for pid in ctx.recent if (info := items.info(pid)) is not None]
        return dataclasses.replace(d, context=dataclasses.replace(
            ctx, viewed=tuple(_line(i) for i in viewed[:4]),
            recommendations=tuple(_line(i) for i in recs)))

    def snapshot(self) -> dict[str, Any]:
        return {"pending": list(self.pending), "marks": dict(self.marks),
                "deltas": list(self.deltas), "seq": self.seq,
                "items": self.items.snapshot() if self.items is not None else None}


class DecideLogic(StatefulBatchLogic[Any, Decision, dict[str, Any]]):
    def __init__(self, shards: int, recommend: RecommendConfig | None,
                 resume: dict[str, Any] | None) -> None:
        self.decider = Decider(shards, recommend, resume)

    def on_batch(self, values: list[Any]) -> tuple[list[Decision], bool]:
        return self.decider.feed(values), False

    def on_eof(self) -> tuple[list[Decision], bool]:
        # Inputs ended: nothing can still arrive below any pending decision's due time.
        return self.decider.release(everything=True), False

    def snapshot(self) -> dict[str, Any]:
        return self.decider.snapshot()
