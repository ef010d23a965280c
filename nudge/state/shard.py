"""One shard of customers: records, timers, the shard's watermark, de-duplication.

The customers step in flows/ holds one Shard per shard key and hands it whole batches; all
the logic is here and in nudge/state/transitions.py, as plain Python, tested without Bytewax.

Event time reaches the shard in band: every ShardChunk carries its source partition's
watermark, after that partition's events. The shard's watermark is the minimum over all
input partitions (a partition that ended counts as +inf; when all ended it is the largest
event time seen, and what is due exactly then runs too).

The shard is an event-time simulator. Events wait in `pending` until the watermark passes
them (no partition can still send anything earlier: parse raises late events to the
watermark), then run in one total order, merged with the customers' timers (journey
stages, segment evaluations, attribution windows): by event time, then customer id, then
source position; a timer runs after the events of its own instant, so an order or an
unsubscribe at a stage's due time wins. Every decision, and all state the shard's
customers share (engagement ranks, the propensity model, item statistics), is a function
of that order alone: the same for any batching, pacing, worker count and crash-and-resume.

Transaction boundary: records live in a CustomerStore (nudge/state/store.py); `snapshot()`
commits it (writes the records changed since the last snapshot) and returns the shard's
state: the commit point Bytewax recovery rolls back to. With a disk store (`disk`: the
directory of every shard's database, under recovery.dir, and how many commits it can undo)
the snapshot carries the store's position, not its records, and a restore rolls the store
back to that position (nudge/state/customerdb.py); without one it carries every record.
"""

from __future__ import annotations

import heapq
import pickle
from operator import attrgetter
from typing import Any, Final

from nudge.core.errors import ConfigError, SnapshotError
from nudge.core.events import Event, Kind
from nudge.core.records import OUTCOME_ERASED, Decision, ProfileWrite, ShardChunk, ShardMark
from nudge.core.snapshot import FORMAT_KEY, check, stamp
from nudge.core.timefmt import least_watermark
from nudge.scoring.itemstats import ItemDelta, ItemStatsBuilder
from nudge.scoring.propensity import PropensityModel
from nudge.state import suppression
from nudge.state.customer import Customer
from nudge.state.customerdb import CustomerDB, shard_path
from nudge.state.dedup import MessageDedup
from nudge.state.engagement import EngagementRanks
from nudge.state.eventtime import event_order
from nudge.state.outputs import ShardOutput
from nudge.state.program import Program
from nudge.state.store import CustomerStore, MemoryRecords
from nudge.state.transitions import Shared, advance, apply, wake

SNAPSHOT_FORMAT: Final = 7  # 6: the store's records in the snapshot (migrated on restore)
# The order events run in: see the module docstring and nudge.core.records.Event (the kind
# breaks the one tie two records can have, nudge/state/eventtime.py).
EVENT_ORDER: Final = event_order
_TS: Final = attrgetter("ts")
FOREVER: Final = 4_611_686_018_427_387_904  # 2**62


class Shard:
    def __init__(self, shard: int, program: Program, resume: dict[str, Any] | None = None,
                 *, profiles: bool = False, disk: tuple[str, int] | None = None) -> None:
        self.shard = shard
        self.program = program
        self.disk = disk
        self.store = CustomerStore()  # on disk: opened once the shard's number is known
        self.shared = Shared(program, shard, lambda: self.store.count)
        self.timers: list[tuple[int, str]] = []  # (time, customer id); stale ones skipped
        self.pending: list[Event] = []  # events the watermark has not passed yet
        self.part_wm: dict[str, int] = {}
        self.part_final: dict[str, int | None] = {}  # ended partition -> its largest time
        self.n_parts = 0
        self.seen = MessageDedup(program.dedup_window)
        self.emitted: tuple[int | None, bool] | None = None
        self.ran: tuple[int, bool] | None = None  # the watermark the last _run ran to
        self.profiles = profiles
        self.unpublished: list[tuple[str, bytes]] = []  # committed, not yet in the view
        self.stats = {"events": 0, "duplicates": 0, "erased": 0}
        if resume is not None:
            self._restore(resume)
        elif shard >= 0:
            self._open_store(None)

    def customer(self, customer_id: str) -> Any:
        """A customer's record, read only (for inspection and tests)."""
        return self.store.peek(customer_id)

    # -- the batch ----------------------------------------------------------------------

    def process(self, chunks: list[ShardChunk]) -> ShardOutput:
        """Feed chunks; returns what they produced, by kind, with the shard's ShardMark
        if its watermark moved."""
        for chunk in chunks:
            if chunk.shard != self.shard:
                self._number(chunk.shard)
            if chunk.events:
                self.pending.extend(chunk.events)
            self._observe(chunk)
        profiles = self.publish()
        deltas: list[ItemDelta] = []
        wm, final = self.watermark()
        # A chunk that leaves the watermark where it was runs nothing: events only arrive at
        # or after a shard's watermark (parse and the identity steps see to it). Most chunks
        # are ticks of one input part of many.
        if wm is not None and (wm, final) != self.ran:
            self.ran = (wm, final)
            try:
                self._run(wm, final)
            except SnapshotError as exc:  # a stored record of another format (customer.py)
                raise SnapshotError(f"{exc.what} of shard {self.shard}", exc.found,
                                    exc.expected) from None
            self.seen.expire(wm)
            if self.shared.items is not None:
                deltas = self.shared.items.flush(FOREVER if final else wm)
        o = self.shared.out
        if not (o.decisions or o.segments or o.outcomes or o.addresses):
            return ShardOutput([], deltas, self._mark(), [], [], profiles, [])
        # The lists leave with the output (another worker may read them while this shard
        # runs on): the shard starts new ones.
        out = ShardOutput(o.decisions, deltas, self._mark(), o.segments, o.outcomes, profiles,
                          o.addresses)
        o.decisions, o.segments, o.outcomes, o.addresses = [], [], [], []
        return out

    def _number(self, shard: int) -> None:
        # Bytewax builds a shard without its key: the number comes with the first chunk.
        opened = self.shard >= 0
        self.shard = shard
        if self.shared.items is not None:
            self.shared.items.shard = shard
        if not opened:
            self._open_store(None)

    def _open_store(self, state: dict[str, Any] | None) -> None:
        """The shard's store as of the snapshot's `state` of it (None: a new shard)."""
        records = state.get("records") if state is not None else None
        count = state["count"] if state is not None else 0
        if self.disk is None:
            if state is not None and records is None:
                raise ConfigError("recovery.dir", f"not set, and the recovery state of shard "
                                  f"{self.shard} keeps its customers in a store under it: set "
                                  "it to the directory Bytewax recovers from")
            self.store = CustomerStore(MemoryRecords(records), count)
            return
        root, history = self.disk
        db = CustomerDB(shard_path(root, self.shard), self.shard, history)
        if records is not None:  # a snapshot that carried its records: they go to disk
            db.reset(records)
        else:
            db.rollback(state["position"] if state is not None else 0)
        self.store = CustomerStore(db, count)

    def _ready(self, wm: int, final: bool) -> list[Event]:
        pending = self.pending
        if final or (pending and max(map(_TS, pending)) < wm):
            self.pending = []
            return pending
        ready = [ev for ev in pending if ev.ts < wm]
        if ready:
            self.pending = [ev for ev in pending if ev.ts >= wm]
        return ready

    def _run(self, wm: int, final: bool) -> None:
        """Everything the watermark has passed, in the shard's one order."""
        ready = self._ready(wm, final)
        ready.sort(key=_TS)  # int keys: much cheaper than EVENT_ORDER's tuples
        if len(set(map(_TS, ready))) != len(ready):
            ready.sort(key=EVENT_ORDER)  # two events share an instant: the full order
        # Timers touch no message ids, so the batch's duplicates can go first.
        unique = self.seen.unique(ready)
        timers = self.timers
        shared = self.shared
        store = self.store
        hot, dirty = store.hot.get, store.dirty.add
        for ev in unique:
            if timers and timers[0][0] < ev.ts:
                self._fire(ev.ts, False)
            cid = ev.customer_id
            if ev.kind == Kind.ERASURE_REQUESTED:
                self._erase(cid, ev)
                continue
            c = hot(cid)  # the usual case inline: a record in use (store.get_or_create)
            if c is None:
                c = store.get_or_create(cid)
            else:
                dirty(cid)
            if apply(c, cid, ev, shared):
                w = wake(c)
                if w != c.wake and w:
                    # A stale later entry may stay in the heap: it is skipped when popped.
                    c.wake = w
                    heapq.heappush(timers, (w, cid))
        if shared.retired:
            for cid in shared.retired:
                store.erase(cid)  # its profile view entry goes too
            shared.retired.clear()
        self._fire(wm, final)
        self.stats["events"] += len(unique)
        self.stats["duplicates"] += len(ready) - len(unique)

    def _erase(self, cid: str, ev: Event) -> None:
        """An erasure: the record goes (its timers are skipped when they come up, the profile
        view deletes it at the next commit); what stays is the suppression of its address,
        kept as a digest by the address's shard (nudge/state/suppression.py)."""
        c = self.store.peek(cid)
        self.shared.out.addresses.extend(
            suppression.changes(c if c is not None else Customer(), cid, ev, None))
        # through decide to the ledger, after the emails due before it (OUTCOME_ERASED)
        self.shared.out.decisions.append(
            Decision(cid, "", 0, 0, ev.ts, OUTCOME_ERASED, None))
        if c is not None:
            self.shared.ranks.replace(c.engagement, None)
            self.store.erase(cid)
            if c.wake:  # its timer entries would keep the id: rebuild the heap without them
                self.timers[:] = [t for t in self.timers if t[1] != cid]  # in place: _run holds it
                heapq.heapify(self.timers)
            self.stats["erased"] += 1

    def _fire(self, until: int, inclusive: bool) -> None:
        """Run the timers due before `until` (or at it, if `inclusive`), in (time, customer)
        order."""
        timers = self.timers
        shared = self.shared
        while timers and (timers[0][0] < until or (inclusive and timers[0][0] == until)):
            t, cid = heapq.heappop(timers)
            c = self.store.peek(cid)
            if c is None or c.wake != t:
                continue  # stale: the customer's next instant moved since it was pushed
            self.store.dirty.add(cid)  # about to change
            advance(c, cid, t, shared)
            w = wake(c)
            c.wake = w
            if w:
                heapq.heappush(timers, (w, cid))

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
        return least_watermark(self.n_parts, len(self.part_final), open_parts), False

    def _mark(self) -> ShardMark | None:
        state = self.watermark()
        if state == self.emitted or (state[0] is None and not state[1]):
            return None
        self.emitted = state
        return ShardMark(self.shard, state[0], state[1])

    # -- the profile view ---------------------------------------------------------------

    def publish(self) -> list[ProfileWrite]:
        """The records committed at the last snapshot, for the queryable profile view, and
        the shard's shared state (model, engagement ranks) under `__shard__/<n>`."""
        if not self.unpublished:
            return []
        out = [ProfileWrite(cid, data) for cid, data in self.unpublished]
        out.append(ProfileWrite(f"__shard__/{self.shard}", pickle.dumps(self.shared_state())))
        self.unpublished = []
        return out

    def shared_state(self) -> dict[str, Any]:
        s = self.shared
        return {
            "model": s.model.snapshot() if s.model is not None else None,
            "engagement": s.ranks.snapshot(),
            "population": self.store.count,
            "stats": dict(self.stats, dropped_windows=s.dropped_windows),
        }

    # -- the transaction boundary ---------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        self.store.commit()
        if self.profiles:
            self.unpublished.extend(self.store.last_commit)
        return stamp(SNAPSHOT_FORMAT, {
            "shard": self.shard,
            "store": self.store.state(),
            "timers": self.timers,
            "pending": self.pending,
            "part_wm": self.part_wm,
            "part_final": self.part_final,
            "n_parts": self.n_parts,
            "seen": self.seen.snapshot(),
            "emitted": self.emitted,
            "shared": self.shared_state(),
            "items": self.shared.items.snapshot() if self.shared.items is not None else None,
            "unpublished": self.unpublished,
        })

    def _restore(self, snap: dict[str, Any]) -> None:
        if isinstance(snap, dict) and snap.get(FORMAT_KEY) == 6:  # the records inline
            records = dict(snap["store"])
            snap = dict(snap, store={"count": len(records), "records": records})
        else:
            shard = snap.get("shard", self.shard) if isinstance(snap, dict) else self.shard
            check(f"shard {shard}", snap, SNAPSHOT_FORMAT)
        self.shard = snap["shard"]
        self._open_store(snap["store"])
        self.timers = list(snap["timers"])
        heapq.heapify(self.timers)
        self.pending = list(snap["pending"])
        self.part_wm = dict(snap["part_wm"])
        self.part_final = dict(snap["part_final"])
        self.n_parts = snap["n_parts"]
        self.seen = MessageDedup(self.program.dedup_window, resume=snap["seen"])
        emitted = snap["emitted"]
        self.emitted = (emitted[0], emitted[1]) if emitted is not None else None
        shared = snap["shared"]
        if shared["model"] is not None and self.shared.model is not None:
            m = self.program.model
            self.shared.model = PropensityModel(learning_rate=m.learning_rate, l2=m.l2,
                                                prior=m.prior, resume=shared["model"])
        self.shared.ranks = EngagementRanks(shared["engagement"], lazy=not self.program.ranked)
        self.shared.dropped_windows = shared["stats"].get("dropped_windows", 0)
        if snap["items"] is not None and self.shared.items is not None:
            self.shared.items = ItemStatsBuilder(self.shard, resume=snap["items"])
        self._number(self.shard)
        self.unpublished = list(snap["unpublished"])

