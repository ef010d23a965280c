"""De-duplication of producer retries by (customer, messageId) within a window of event time.

A record whose customer sent the same messageId at an effective time within `window` of its
own is a duplicate. The key is the customer's and not the id alone: producers are
untrusted, and one customer's events must never make another's look like a repeat (a
`messageId` copied from someone else's `Unsubscribed` would otherwise drop it). What is kept
is a 128-bit digest of the pair (`dedup_key`, xxh3), never the strings: an entry costs the
same whatever the id's length (parse bounds that too, `message_id_too_long`).

Keys are kept in generations of one window of event time each, so forgetting them costs
one dict per window instead of one deletion per id. A shard asks in event-time
order, so the usual lookup checks only the current generation and the one before; a time
from an older generation (never in a shard, possible for other callers) checks all three
that can hold an id within the window. Ids are forgotten only once no record the
watermark still lets in could be within the window of them, so whether a record is a
duplicate never depends on when the watermark moved.

>>> d = MessageDedup(window=100)
>>> k = dedup_key("c1", "m1")
>>> d.is_duplicate(k, 1000), d.is_duplicate(k, 1050), d.is_duplicate(k, 1200)
(False, True, False)
>>> d.is_duplicate(dedup_key("c2", "m1"), 1060)  # another customer's id: not a repeat
False
>>> d.expire(watermark=10_000); len(d)
0
>>> from nudge.core.records import Event, Kind
>>> def view(message_id, ts): return Event(ts, "c1", 0, 0, Kind.PRODUCT_VIEWED, message_id)
>>> [e.ts for e in d.unique([view("a", 20_000), view("a", 20_050), view("", 20_060),
...                          view("a", 20_200)])]
[20000, 20060, 20200]
"""

from __future__ import annotations

from typing import Any, Final

from xxhash import xxh3_128_intdigest

from nudge.core.events import Event

_NONE: Final[dict[int, int]] = {}


def dedup_key(customer_id: str, message_id: str) -> int:
    """The pair's digest. The customer id's length comes first so that no split of the
    same characters between the two ids gives the same input."""
    return xxh3_128_intdigest(f"{len(customer_id)}:{customer_id}{message_id}".encode())


class MessageDedup:
    __slots__ = ("_current", "_g", "_previous", "generations", "window")

    def __init__(self, window: int, resume: dict[int, Any] | None = None) -> None:
        """`resume`: a snapshot() to start from (nudge/core/snapshot.py)."""
        self.window = max(1, window)
        # ts // window -> {key: ts}
        self.generations: dict[int, dict[int, int]] = {} if resume is None else {
            int(g): dict(ids) for g, ids in resume.items()}
        self._g = -1  # the newest generation and its dicts, for the usual lookup
        self._current: dict[int, int] = _NONE
        self._previous: dict[int, int] = _NONE
        if self.generations:
            self._g = max(self.generations)
            self._current = self.generations[self._g]
            self._previous = self.generations.get(self._g - 1, _NONE)

    def is_duplicate(self, key: int, ts: int) -> bool:
        """True if the key (`dedup_key`) was seen within the window of `ts`; else remember
        it."""
        window = self.window
        g = ts // window
        if g != self._g:
            if g < self._g:
                return self._is_duplicate_older(key, ts, g)
            self._g = g
            self._current = self.generations.setdefault(g, {})
            self._previous = self.generations.get(g - 1, _NONE)
        prev = self._current.get(key)
        if prev is None:
            prev = self._previous.get(key)
            if prev is None or ts - prev > window:
                self._current[key] = ts
                return False
        return True

    def unique(self, events: list[Event]) -> list[Event]:
        """The events (in event-time order) that are not duplicates, as `is_duplicate`
        would tell them one by one; its usual case inline, since every event asks."""
        out: list[Event] = []
        append = out.append
        window = self.window
        for ev in events:
            text = ev.message_id
            if not text:
                append(ev)
                continue
            cid = ev.customer_id
            mid = xxh3_128_intdigest(f"{len(cid)}:{cid}{text}".encode())  # dedup_key inline
            ts = ev.ts
            if ts // window == self._g:
                current = self._current
                if mid in current:
                    continue
                prev = self._previous.get(mid)
                if prev is not None and ts - prev <= window:
                    continue
                current[mid] = ts
                append(ev)
            elif not self.is_duplicate(mid, ts):
                append(ev)
        return out

    def _is_duplicate_older(self, key: int, ts: int, g: int) -> bool:
        window, gens = self.window, self.generations
        for k in (g, g - 1, g + 1):
            prev = gens.get(k, _NONE).get(key)
            if prev is not None and -window <= ts - prev <= window:
                return True
        gens.setdefault(g, {})[key] = ts
        if g == self._g - 1:
            self._previous = gens[g]  # it may have been created just now
        return False

    def expire(self, watermark: int) -> None:
        # Generation g holds times < (g + 1) * window; every later record has ts >= watermark,
        # so g is useless once (g + 1) * window + window <= watermark.
        window = self.window
        for g in [g for g in self.generations if (g + 2) * window <= watermark]:
            del self.generations[g]
            if g == self._g - 1:
                self._previous = _NONE

    def __len__(self) -> int:
        return sum(len(s) for s in self.generations.values())

    def snapshot(self) -> dict[int, dict[int, int]]:
        return self.generations
