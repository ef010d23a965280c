"""A shard's customer records, with the transaction boundary of Bytewax snapshots.

Records live encoded (compact bytes, nudge/state/customer.py) in `committed`, which is what a
snapshot holds. A record in use is decoded into `hot` and marked dirty when it may have
changed; `commit()` encodes the dirty ones back and is called from `snapshot()`: the commit
point Bytewax recovery rolls back to. Decoded records stay hot across commits while they
are in use (active shoppers are touched epoch after epoch), and are dropped after
`keep_epochs` commits without a touch, so memory beyond the encoded bytes stays bounded by
the active set.
"""

from __future__ import annotations

from nudge.state.customer import Customer, decode, encode


class CustomerStore:
    __slots__ = ("committed", "count", "dirty", "erased", "hot", "idle", "keep_epochs",
                 "last_commit")

    def __init__(self, committed: dict[str, bytes] | None = None, keep_epochs: int = 2) -> None:
        self.committed: dict[str, bytes] = committed if committed is not None else {}
        self.hot: dict[str, Customer] = {}
        self.dirty: set[str] = set()
        self.idle: dict[str, int] = {}  # hot customer -> commits since its last touch
        self.keep_epochs = keep_epochs
        self.count = len(self.committed)  # customers, committed or not
        self.last_commit: list[tuple[str, bytes]] = []  # what the last commit() encoded
        self.erased: list[str] = []  # erased since the last commit: b"" in last_commit

    def peek(self, customer_id: str) -> Customer | None:
        """The record for reading only (a change to it may be lost), or None."""
        c = self.hot.get(customer_id)
        if c is None:
            data = self.committed.get(customer_id)
            if data is None:
                return None
            c = self.hot[customer_id] = decode(data)
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
            self.dirty.add(customer_id)
            self.count += 1
        return c

    def erase(self, customer_id: str) -> bool:
        """Forget the customer's record (an erasure): True if there was one. The next
        commit reports it with empty bytes, which the profile view deletes."""
        had = customer_id in self
        self.committed.pop(customer_id, None)
        self.hot.pop(customer_id, None)
        self.idle.pop(customer_id, None)
        self.dirty.discard(customer_id)
        if had:
            self.count -= 1
            self.erased.append(customer_id)
        return had

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self.hot or customer_id in self.committed

    def __len__(self) -> int:
        return self.count

    def commit(self) -> dict[str, bytes]:
        """Encode the dirty records; forget decoded copies idle for `keep_epochs` commits."""
        committed, hot, idle = self.committed, self.hot, self.idle
        written = self.last_commit = []
        for cid in self.dirty:
            data = committed[cid] = encode(hot[cid])
            written.append((cid, data))
            idle[cid] = 0
        self.dirty.clear()
        if self.erased:
            written.extend((cid, b"") for cid in self.erased if cid not in committed)
            self.erased = []
        for cid in list(idle):
            n = idle[cid] + 1
            if n > self.keep_epochs:
                del idle[cid]
                del hot[cid]
            else:
                idle[cid] = n
        return committed
