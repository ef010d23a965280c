"""One shard of customers: records, pending stages, the shard's watermark, de-duplication.

The customers step in flows/ holds one Shard per shard key and hands it whole batches; all
the logic is here, as plain Python, so it is tested without Bytewax.

Event time reaches the shard in band: every ShardChunk carries its source partition's
watermark, after that partition's events. The shard's watermark is the minimum over all
input partitions (a partition that ended counts as +inf; when all ended it is the largest
event time seen, and stages due exactly then fire too). Stages fire in two ways, with the
same result whatever the batching (see README "Event time"):
  - when the shard watermark passes their due time, and
  - just before an event of the same customer with a later effective time is applied.

Transaction boundary: records live encoded in `store` between epochs; a record in use is
decoded into `cache`; `snapshot()` encodes the cache back and is the commit point Bytewax
recovery rolls back to.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

from nudge.records import Decision, Event, Kind, ShardChunk, ShardMark
from state import cart
from state.customer import Customer, apply_facts, decode, encode
from state.policy import Policy

SNAPSHOT_FORMAT = 1


class Shard:
    def __init__(self, shard: int, policy: Policy, dedup_window: int,
                 resume: dict[str, Any] | None = None) -> None:
        self.shard = shard
        self.policy = policy
        self.dedup_window = dedup_window
        self.store: dict[str, bytes] = {}
        self.cache: dict[str, Customer] = {}
        self.timers: list[tuple[int, str]] = []  # (due, customer id), may hold stale entries
        self.part_wm: dict[str, int] = {}
        self.part_final: dict[str, int | None] = {}  # ended partition -> its largest time
        self.n_parts = 0
        self.seen: dict[str, int] = {}  # messageId -> effective time, within the window
        self.seen_order: deque[tuple[int, str]] = deque()
        self.emitted: tuple[int | None, bool] | None = None
        self.stats = {"events": 0, "duplicates": 0}
        if resume is not None:
            self._restore(resume)

    # -- records ------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer | None:
        c = self.cache.get(customer_id)
        if c is None:
            data = self.store.get(customer_id)
            if data is None:
                return None
            c = self.cache[customer_id] = decode(data)
        return c

    def _customer_for_write(self, customer_id: str) -> Customer:
        c = self.customer(customer_id)
        if c is None:
            c = self.cache[customer_id] = Customer()
        return c

    # -- the batch ----------------------------------------------------------------------

    def process(self, chunks: list[ShardChunk]) -> tuple[list[Decision], ShardMark | None]:
        out: list[Decision] = []
        policy = self.policy
        seen = self.seen
        window = self.dedup_window
        n = 0
        for chunk in chunks:
            self.shard = chunk.shard
            for ev in chunk.events:
                mid = ev.message_id
                if mid:
                    prev = seen.get(mid)
                    if prev is not None and -window <= ev.ts - prev <= window:
                        self.stats["duplicates"] += 1
                        continue
                    seen[mid] = ev.ts
                    self.seen_order.append((ev.ts, mid))
                n += 1
                self._apply(ev, policy, out)
            self._observe(chunk)
        self.stats["events"] += n
        out.extend(self._advance())
        return out, self._mark()

    def _apply(self, ev: Event, policy: Policy, out: list[Decision]) -> None:
        cid = ev.customer_id
        c = self._customer_for_write(cid)
        if c.due and c.due < ev.ts:
            out.extend(cart.reach(c, cid, ev.ts, False, policy))
            if c.due:
                heapq.heappush(self.timers, (c.due, cid))
        apply_facts(c, ev)
        if ev.kind != Kind.PRODUCT_VIEWED and cart.on_event(c, ev, policy):
            heapq.heappush(self.timers, (c.due, cid))

    def _observe(self, chunk: ShardChunk) -> None:
        self.n_parts = chunk.n_parts
        if chunk.final:
            self.part_final[chunk.part] = chunk.max_ts
        elif chunk.watermark is not None:
            prev = self.part_wm.get(chunk.part)
            if prev is None or chunk.watermark > prev:
                self.part_wm[chunk.part] = chunk.watermark

    def watermark(self) -> tuple[int | None, bool]:
        """(watermark, all inputs ended). None until every partition has reported."""
        if not self.n_parts:
            return None, False
        if len(self.part_final) >= self.n_parts:
            ends = [t for t in self.part_final.values() if t is not None]
            ends.extend(self.part_wm.values())
            return (max(ends) if ends else None), True
        open_parts = [wm for p, wm in self.part_wm.items() if p not in self.part_final]
        if len(open_parts) + len(self.part_final) < self.n_parts:
            return None, False
        return min(open_parts), False

    def _advance(self) -> list[Decision]:
        wm, final = self.watermark()
        out: list[Decision] = []
        if wm is None:
            return out
        timers = self.timers
        policy = self.policy
        while timers and (timers[0][0] < wm or (final and timers[0][0] <= wm)):
            due, cid = heapq.heappop(timers)
            c = self.customer(cid)
            if c is None or c.due != due:
                continue  # stale: the stage moved, fired already or the episode closed
            out.extend(cart.reach(c, cid, wm, final, policy))
            if c.due:
                heapq.heappush(timers, (c.due, cid))
        self._expire_seen(wm)
        return out

    def _expire_seen(self, wm: int) -> None:
        # A messageId is forgotten only when a duplicate of it could no longer be within
        # the window of it (its effective time would be >= wm), so whether a record counts
        # as a duplicate never depends on when the watermark moved.
        order, seen, window = self.seen_order, self.seen, self.dedup_window
        while order and order[0][0] + window < wm:
            ts, mid = order.popleft()
            if seen.get(mid) == ts:
                del seen[mid]

    def _mark(self) -> ShardMark | None:
        state = self.watermark()
        if state == self.emitted or (state[0] is None and not state[1]):
            return None
        self.emitted = state
        return ShardMark(self.shard, state[0], state[1])

    # -- the transaction boundary ---------------------------------------------------------

    def commit(self) -> None:
        """Encode every record in use back to bytes and drop the decoded copies."""
        store = self.store
        for cid, c in self.cache.items():
            store[cid] = encode(c)
        self.cache.clear()

    def snapshot(self) -> dict[str, Any]:
        self.commit()
        return {
            "format": SNAPSHOT_FORMAT,
            "shard": self.shard,
            "store": self.store,
            "timers": self.timers,
            "part_wm": self.part_wm,
            "part_final": self.part_final,
            "n_parts": self.n_parts,
            "seen": list(self.seen_order),
            "emitted": self.emitted,
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"shard {self.shard}: snapshot format {snap.get('format')} "
                             f"is not {SNAPSHOT_FORMAT}")
        self.shard = snap["shard"]
        self.store = dict(snap["store"])
        self.timers = list(snap["timers"])
        heapq.heapify(self.timers)
        self.part_wm = dict(snap["part_wm"])
        self.part_final = dict(snap["part_final"])
        self.n_parts = snap["n_parts"]
        self.seen_order = deque(tuple(x) for x in snap["seen"])
        self.seen = {mid: ts for ts, mid in self.seen_order}
        emitted = snap["emitted"]
        self.emitted = (emitted[0], emitted[1]) if emitted is not None else None
