"""One shard of customers: records, pending stages, the shard's watermark, de-duplication.

The customers step in flows/ holds one Shard per shard key and hands it whole batches; all
the logic is here, as plain Python, so it is tested without Bytewax.

Event time reaches the shard in band: every ShardChunk carries its source partition's
watermark, after that partition's events. The shard's watermark is the minimum over all
input partitions (a partition that ended counts as +inf; when all ended it is the largest
event time seen, and stages due exactly then fire too).

The shard is an event-time simulator. Events wait in `pending` until the watermark passes
them (no partition can still send anything earlier: parse raises late events to the
watermark), then run in one total order, merged with the customers' timers (journey
stages): by event time, then customer id, then source position; a timer runs after the
events of its own instant, so an order or an unsubscribe at a stage's due time wins. Every
decision, and any state shared by the shard's customers, is a function of that order
alone: the same for any batching, pacing, worker count and crash-and-resume.

Transaction boundary: records live in a CustomerStore (state/store.py); `snapshot()`
commits it (encodes the records changed since the last snapshot) and returns the shard's
whole state: the commit point Bytewax recovery rolls back to.
"""

from __future__ import annotations

import heapq
from operator import attrgetter
from typing import Any

from nudge.records import Decision, Event, Kind, ShardChunk, ShardMark
from state import cart
from state.customer import Customer, apply_facts
from state.dedup import MessageDedup
from state.policy import Policy
from state.store import CustomerStore

SNAPSHOT_FORMAT = 3
# The order events run in: see the module docstring and nudge.records.Event.
EVENT_ORDER = attrgetter("ts", "customer_id", "offset", "part")


class Shard:
    def __init__(self, shard: int, policy: Policy, dedup_window: int,
                 resume: dict[str, Any] | None = None) -> None:
        self.shard = shard
        self.policy = policy
        self.dedup_window = dedup_window
        self.store = CustomerStore()
        self.timers: list[tuple[int, str]] = []  # (due, customer id), may hold stale entries
        self.pending: list[Event] = []  # events the watermark has not passed yet
        self.part_wm: dict[str, int] = {}
        self.part_final: dict[str, int | None] = {}  # ended partition -> its largest time
        self.n_parts = 0
        self.seen = MessageDedup(dedup_window)
        self.emitted: tuple[int | None, bool] | None = None
        self.stats = {"events": 0, "duplicates": 0}
        if resume is not None:
            self._restore(resume)

    # -- records ------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer | None:
        """A customer's record, read only (for inspection and tests)."""
        return self.store.peek(customer_id)

    # -- the batch ----------------------------------------------------------------------

    def process(self, chunks: list[ShardChunk]) -> tuple[list[Decision], ShardMark | None]:
        for chunk in chunks:
            self.shard = chunk.shard
            if chunk.events:
                self.pending.extend(chunk.events)
            self._observe(chunk)
        out: list[Decision] = []
        wm, final = self.watermark()
        if wm is not None:
            self._run(wm, final, out)
            self.seen.expire(wm)
        return out, self._mark()

    def _ready(self, wm: int, final: bool) -> list[Event]:
        pending = self.pending
        if final or (pending and max(pending, key=_ts).ts < wm):
            self.pending = []
            return pending
        ready = [ev for ev in pending if ev.ts < wm]
        if ready:
            self.pending = [ev for ev in pending if ev.ts >= wm]
        return ready

    def _run(self, wm: int, final: bool, out: list[Decision]) -> None:
        """Everything the watermark has passed, in the shard's one order."""
        ready = self._ready(wm, final)
        ready.sort(key=EVENT_ORDER)
        policy = self.policy
        timers = self.timers
        duplicate = self.seen.is_duplicate
        customer = self.store.get_or_create
        n = dups = 0
        for ev in ready:
            if timers and timers[0][0] < ev.ts:
                self._fire(ev.ts, False, out)
            if ev.message_id and duplicate(ev.message_id, ev.ts):
                dups += 1
                continue
            n += 1
            cid = ev.customer_id
            c = customer(cid)
            apply_facts(c, ev)
            if ev.kind != Kind.PRODUCT_VIEWED and cart.on_event(c, ev, policy):
                heapq.heappush(timers, (c.due, cid))
        self._fire(wm, final, out)
        self.stats["events"] += n
        self.stats["duplicates"] += dups

    def _fire(self, until: int, inclusive: bool, out: list[Decision]) -> None:
        """Run the timers due before `until` (or at it, if `inclusive`), in (due, customer)
        order."""
        timers = self.timers
        policy = self.policy
        while timers and (timers[0][0] < until or (inclusive and timers[0][0] == until)):
            due, cid = heapq.heappop(timers)
            c = self.store.peek(cid)
            if c is None or c.due != due:
                continue  # stale: the stage moved, fired already or the episode closed
            self.store.get(cid)  # about to change: mark it dirty
            out.extend(cart.reach(c, cid, due, True, policy))
            if c.due:
                heapq.heappush(timers, (c.due, cid))

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

    def _mark(self) -> ShardMark | None:
        state = self.watermark()
        if state == self.emitted or (state[0] is None and not state[1]):
            return None
        self.emitted = state
        return ShardMark(self.shard, state[0], state[1])

    # -- the transaction boundary ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "shard": self.shard,
            "store": self.store.commit(),
            "timers": self.timers,
            "pending": self.pending,
            "part_wm": self.part_wm,
            "part_final": self.part_final,
            "n_parts": self.n_parts,
            "seen": self.seen.snapshot(),
            "emitted": self.emitted,
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        if snap.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"shard {self.shard}: snapshot format {snap.get('format')} "
                             f"is not {SNAPSHOT_FORMAT}")
        self.shard = snap["shard"]
        self.store = CustomerStore(dict(snap["store"]))
        self.timers = list(snap["timers"])
        heapq.heapify(self.timers)
        self.pending = list(snap["pending"])
        self.part_wm = dict(snap["part_wm"])
        self.part_final = dict(snap["part_final"])
        self.n_parts = snap["n_parts"]
        self.seen = MessageDedup.restore(self.dedup_window, snap["seen"])
        emitted = snap["emitted"]
        self.emitted = (emitted[0], emitted[1]) if emitted is not None else None


def _ts(ev: Event) -> int:
    return ev.ts
