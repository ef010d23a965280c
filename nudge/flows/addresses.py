"""The addresses step: every sent decision passes the shard that owns its address.

Consent belongs to the address too (nudge/state/suppression.py), and an address is not a
customer: the customer whose decision is due and the customers whose events suppressed the
address may live on any shards. So between the customers step and decide, an address shard
(`address_shard`: crc32 of the normalised address, like a customer's) receives

- the AddressChanges of every customer shard, routed by address,
- the sent Decisions, routed by their recipient,
- every customer shard's ShardMark (to every address shard),

and, like decide, holds them until every customer shard's watermark has passed them, then
runs them in event-time order, an instant's changes before its decisions (so an unsubscribe
at a stage's due time wins, as it does for the customer's own consent). A sent decision to
a suppressed address leaves as `suppressed` / `address_suppressed`. The decisions it lets
through, and its own ShardMark (numbered `shards + n`), go on to decide, which waits for
the marks of both steps. Everything is a function of event time and the input alone: the
same for any worker count, batching or crash and resume.

There are `address_shards(shards)` address shards, fewer than customer shards: every
customer shard's mark goes to every address shard, and suppression lists are small (only
addresses that unsubscribed, bounced, complained or were erased), so 64 customer shards
share 4 address shards (measured: routing and watching 64 x 64 marks per chunk cost ~1.6 µs
an event of pure Python, a fifth of the lean run).

    in:  (shard key, (address shard, AddressChange | Decision | ShardMark))
    out: (shard key, Decision | ShardMark)
"""

from __future__ import annotations

from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.core.address import normalised
from nudge.core.ids import shard_of
from nudge.core.records import OUTCOME_SENT, AddressChange, Decision, ShardMark
from nudge.core.snapshot import check, stamp
from nudge.flows.route import shard_key
from nudge.state.suppression import AddressBook

# pending items, marks, the suppression list (nudge/core/snapshot.py)
SNAPSHOT_FORMAT = 1


def address_shards(shards: int) -> int:
    """How many address shards a flow of `shards` customer shards has (stored schema, as
    the shard count: recovery state is keyed by it)."""
    return max(1, shards // 16)


def address_shard(address: str, n: int) -> int:
    """The address shard (of `n`) that owns an address: the one shard hash of its
    normalised form."""
    return shard_of(normalised(address), n)


def via_addresses(x: Any) -> bool:
    """Whether a customers-step Decision goes through the addresses step (a sent one) or
    straight to decide (suppressed and holdout decisions send nothing)."""
    return x.outcome == OUTCOME_SENT and x.context is not None


def to_addresses(item: tuple[str, Any], n: int) -> list[tuple[str, tuple[int, Any]]]:
    """A customers-step output bound for the addresses step, keyed by its address shard (of
    `n`); a ShardMark goes to every address shard. Anything else goes elsewhere (empty)."""
    x = item[1]
    t = type(x)
    if t is ShardMark:
        return [(shard_key(a), (a, x)) for a in range(n)]
    if t is AddressChange:
        a = address_shard(x.address, n)
        return [(shard_key(a), (a, x))]
    if t is Decision and via_addresses(x):
        a = address_shard(x.context.email, n)
        return [(shard_key(a), (a, x))]
    return []


def _order(x: Any) -> tuple[Any, ...]:
    if type(x) is AddressChange:
        return x.sort_key()
    return (x.due, 1, x.customer_id, x.trigger, x.stage)


class AddressShard:
    """Pure buffer, order and check, tested without Bytewax (as decide's Decider)."""

    def __init__(self, shards: int, resume: dict[str, Any] | None = None) -> None:
        self.shards = shards  # customer shards: their marks, and this one's number offset
        self.number = -1
        self.book = AddressBook()
        self.pending: list[Any] = []
        self.marks: dict[int, tuple[int | None, bool]] = {}
        self.emitted: tuple[int | None, bool] | None = None
        self.suppressed = 0
        if resume is not None:
            resume = check("addresses", resume, SNAPSHOT_FORMAT)
            self.number = resume["number"]
            self.book = AddressBook(dict(resume["book"]))
            self.pending = list(resume["pending"])
            self.marks = {int(k): (v[0], v[1]) for k, v in resume["marks"].items()}
            e = resume["emitted"]
            self.emitted = (e[0], e[1]) if e is not None else None

    def watermark(self) -> tuple[int | None, bool]:
        """(the customer shards' watermark, all ended), as decide computes it."""
        if len(self.marks) < self.shards:
            return None, False
        if all(final for _, final in self.marks.values()):
            return None, True
        values = [wm for wm, final in self.marks.values() if not final and wm is not None]
        if len(values) < sum(1 for _, final in self.marks.values() if not final):
            return None, False
        return min(values), False

    def feed(self, items: list[tuple[int, Any]]) -> list[Any]:
        for number, x in items:
            self.number = number
            if type(x) is ShardMark:
                self.marks[x.shard] = (x.watermark, x.final)
            else:
                self.pending.append(x)
        return self.release()

    def release(self, everything: bool = False) -> list[Any]:
        wm, final = self.watermark()
        ready: list[Any] = []
        if everything or final:
            ready, self.pending = self.pending, []
        elif wm is not None and self.pending:
            ready = [x for x in self.pending if _order(x)[0] < wm]
            if ready:
                self.pending = [x for x in self.pending if _order(x)[0] >= wm]
        ready.sort(key=_order)  # stable: one customer shard's items keep their order
        out: list[Any] = []
        book = self.book
        for x in ready:
            if type(x) is AddressChange:
                book.apply(x)
            else:
                checked = book.check(x)
                if checked is not x:
                    self.suppressed += 1
                out.append(checked)
        state = (wm, final or everything)
        if self.number >= 0 and state != self.emitted and (wm is not None or state[1]):
            self.emitted = state
            out.append(ShardMark(self.shards + self.number, state[0], state[1]))
        return out

    def snapshot(self) -> dict[str, Any]:
        return stamp(SNAPSHOT_FORMAT, {
            "number": self.number, "book": self.book.snapshot(), "pending": list(self.pending),
            "marks": dict(self.marks), "emitted": self.emitted})


class AddressesLogic(StatefulBatchLogic[Any, Any, dict[str, Any]]):
    def __init__(self, shards: int, resume: dict[str, Any] | None) -> None:
        self.step = AddressShard(shards, resume)

    def on_batch(self, values: list[tuple[int, Any]]) -> tuple[list[Any], bool]:
        return self.step.feed(values), False

    def on_eof(self) -> tuple[list[Any], bool]:
        # Inputs ended: nothing can still arrive below any pending item's time.
        return self.step.release(everything=True), False

    def snapshot(self) -> dict[str, Any]:
        return self.step.snapshot()
