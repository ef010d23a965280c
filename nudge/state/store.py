"""A shard's customer records, with the transaction boundary of Bytewax snapshots.

Committed records are encoded bytes (nudge/state/customer.py) in a backend: a dict in memory
(`MemoryRecords`, whose snapshot carries every record: the store without recovery), or the
shard's RocksDB database under recovery.dir (nudge/state/customerdb.py, whose snapshot carries
its position only, so an epoch costs what it changed and idle customers stay on disk). A
record in use is decoded into `hot`, with its committed bytes in `base`, and marked dirty when
it may have changed; `commit()`, called from the shard's `snapshot()` (the commit point Bytewax
recovery rolls back to), encodes the dirty ones and writes those whose bytes changed in one
batch, with their previous bytes for the disk store's undo. Decoded records stay hot across
commits while they are in use (active shoppers are touched epoch after epoch), and are
dropped after `keep_epochs` commits without a touch, so memory beyond the backend stays
bounded by the active set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from nudge.state.customer import Customer, decode, encode

# (customer id, new bytes or None for an erasure, previous committed bytes or None)
Change = tuple[str, bytes | None, bytes | None]


class Records(Protocol):
    def get(self, customer_id: str, /) -> bytes | None: ...

    def write(self, changes: list[Change]) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class MemoryRecords:
    """Every committed record in a dict; the snapshot carries the dict."""

    __slots__ = ("data", "get")
    get: Callable[[str], bytes | None]

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        self.data: dict[str, bytes] = data if data is not None else {}
        self.get = self.data.get  # a bound dict.get: the cheapest read

    def write(self, changes: list[Change]) -> None:
        data = self.data
        for cid, new, _prev in changes:
            if new is None:
                data.pop(cid, None)
            else:
                data[cid] = new

    def state(self) -> dict[str, Any]:
        return {"records": self.data}

    def close(self) -> None:
        pass


class CustomerStore:
    __slots__ = ("base", "count", "dirty", "erased", "hot", "idle", "keep_epochs",
                 "last_commit", "records")

    def __init__(self, records: Records | None = None, count: int = 0,
                 keep_epochs: int = 2) -> None:
        self.records: Records = records if records is not None else MemoryRecords()
        self.hot: dict[str, Customer] = {}
        self.base: dict[str, bytes | None] = {}  # hot customer -> committed bytes (None: new)
        self.dirty: set[str] = set()
        self.idle: dict[str, int] = {}  # hot customer -> commits since its last touch
        self.keep_epochs = keep_epochs
        self.count = count  # customers, committed or not
        self.last_commit: list[tuple[str, bytes]] = []  # what the last commit() wrote
        # erased since the last commit -> its committed bytes (b"" in last_commit)
        self.erased: dict[str, bytes] = {}

    @classmethod
    def of(cls, records: dict[str, bytes]) -> CustomerStore:
        """A store in memory holding these committed records."""
        return cls(MemoryRecords(records), len(records))

    def peek(self, customer_id: str) -> Customer | None:
        """The record for reading only (a change to it may be lost), or None."""
        c = self.hot.get(customer_id)
        if c is None:
            if self.erased and customer_id in self.erased:
                return None
            data = self.records.get(customer_id)
            if data is None:
                return None
            c = self.hot[customer_id] = decode(data)
            self.base[customer_id] = data
            self.idle[customer_id] = 0
        return c

    def get(self, customer_id: str) -> Customer | None:
        """The record for reading and writing (marked dirty), or None if there is none."""
        c = self.peek(customer_id)
        if c is not None:
            self.dirty.add(customer_id)
        return c

    def get_or_create(self, customer_id: str) -> Customer:
        c = self.get(customer_id)
        if c is None:
            c = self.hot[customer_id] = Customer()
            # erased in this epoch and back: the commit replaces the erased bytes
            self.base[customer_id] = self.erased.pop(customer_id, None)
            self.dirty.add(customer_id)
            self.count += 1
        return c

    def erase(self, customer_id: str) -> bool:
        """Forget the customer's record (an erasure): True if there was one. The next
        commit deletes it from the backend and reports it with empty bytes, which the
        profile view deletes."""
        if customer_id in self.hot:
            prev = self.base.pop(customer_id)
            del self.hot[customer_id]
            self.idle.pop(customer_id, None)
            self.dirty.discard(customer_id)
        elif customer_id in self.erased:
            return False
        else:
            prev = self.records.get(customer_id)
            if prev is None:
                return False
        self.count -= 1
        if prev is not None:  # else created in this epoch: nothing committed to delete
            self.erased[customer_id] = prev
        return True

    def __contains__(self, customer_id: str) -> bool:
        if customer_id in self.hot:
            return True
        return customer_id not in self.erased and self.records.get(customer_id) is not None

    def __len__(self) -> int:
        return self.count

    def commit(self) -> None:
        """Write the dirty records whose bytes changed and the erasures; forget decoded
        copies idle for `keep_epochs` commits."""
        hot, base, idle = self.hot, self.base, self.idle
        changes: list[Change] = []
        written = self.last_commit = []
        for cid in self.dirty:
            data = encode(hot[cid])
            prev = base[cid]
            if data != prev:
                changes.append((cid, data, prev))
                written.append((cid, data))
                base[cid] = data
            idle[cid] = 0
        self.dirty.clear()
        if self.erased:
            for cid, prev in self.erased.items():
                changes.append((cid, None, prev))
                written.append((cid, b""))
            self.erased = {}
        if changes:
            self.records.write(changes)
        for cid in list(idle):
            n = idle[cid] + 1
            if n > self.keep_epochs:
                del idle[cid]
                del hot[cid]
                del base[cid]
            else:
                idle[cid] = n

    def state(self) -> dict[str, Any]:
        """What the shard's snapshot carries of the store (after a commit)."""
        return {"count": self.count, **self.records.state()}
