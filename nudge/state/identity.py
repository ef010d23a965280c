"""The identity step: an anonymous id's events, before and after it is linked to a user.

Keyed by the anonymous id's identity shard. It receives every event that carries only an
anonymousId (customer key `anon:<id>`, nudge.core.ids) and the LINK records of the links
step (nudge/state/links.py), and runs them in the one event order
(nudge/state/eventtime.py), so what is "before the link" is decided by event time alone.

  - An event of an anonymous id that is not linked goes on to the anonymous customer
    `anon:<id>` (an anonymous shopper who gave an email in a form gets emails too), and is
    kept, most recent `identity.history_events`, as the id's history.
  - A LINK of an id not yet linked sends the history to the user's customer shard as one
    MERGE record at the link's instant (applied there in the history's event-time order,
    nudge/state/transitions.py), and a RETIRE to the anonymous customer, whose record is
    closed and dropped at that instant. Later events of the id go to the user, marked with
    the anonymous id (such an event never changes the user's consent).
  - A LINK of an id already linked to another user is refused, as Segment refuses to move
    an anonymous id (and the history merged with it) from one user to another
    (`already_linked`): a dead letter whose raw bytes are the refused link as an `alias`.

State is bounded: an id idle for `identity.ttl` is forgotten (its next event starts over
as a new anonymous shopper), and each history keeps at most `identity.history_events`, none
older than `identity.history_window` before its newest.
"""

from __future__ import annotations

from typing import Any, Final

from nudge.core.events import Event, Kind
from nudge.core.ids import (
    anonymous_key,
    anonymous_of,
    identity_key,
    is_anonymous_key,
    log_id,
    shard_key,
    shard_of,
)
from nudge.core.records import ShardChunk
from nudge.state.links import IdentityStage, emit, refusal

# Positions in an anonymous id's state list.
USER: Final = 0  # the user key it is linked to, or None
LINKED_AT: Final = 1
LAST_SEEN: Final = 2
HISTORY: Final = 3  # its events before the link, oldest first
RECORD: Final = 4  # 1 if the anonymous customer `anon:<id>` has a record to retire


class IdentityShard(IdentityStage):
    STEP = "identity"
    STATS = ("merges", "merged_events", "history_dropped", "already_linked")

    def restore_own(self, snap: dict[str, Any] | None) -> None:
        self.anons: dict[str, list[Any]] = dict(snap["anons"]) if snap else {}

    def own(self) -> dict[str, Any]:
        return {"anons": self.anons}

    def linked(self, anonymous_id: str) -> str | None:
        """The user key an anonymous id is linked to (inspection and tests)."""
        st = self.anons.get(anonymous_id)
        return st[USER] if st is not None else None

    def process(self, chunks: list[ShardChunk]) -> list[tuple[str, Any]]:
        ready, wm = self.take(chunks)
        f = self.fanout
        outs: dict[str, list[Event]] = {}
        dead: list[tuple[str, Any]] = []
        for ev in ready:
            if ev.kind == Kind.LINK:
                self._link(ev, outs, dead)
                continue
            if not is_anonymous_key(ev.customer_id):  # a user's own, from the links step
                outs.setdefault(shard_key(shard_of(ev.customer_id, f.shards)), []).append(ev)
                continue
            x = anonymous_of(ev.customer_id)
            if ev.kind == Kind.ERASURE_REQUESTED:
                # the id's history and link go; the erasure goes to the anonymous record,
                # never through a link to its user (an anonymous id is not the user)
                self.anons.pop(x, None)
                outs.setdefault(shard_key(shard_of(ev.customer_id, f.shards)), []).append(ev)
                continue
            st = self._live(x, ev.ts)
            if st is not None and st[USER] is not None:
                st[LAST_SEEN] = ev.ts
                moved = ev.keyed(st[USER], x)
                outs.setdefault(shard_key(shard_of(st[USER], f.shards)), []).append(moved)
                continue
            if st is None:
                st = self.anons[x] = [None, 0, ev.ts, [], 0]
            self._remember(st, ev)
            outs.setdefault(shard_key(shard_of(ev.customer_id, f.shards)), []).append(ev)
        if wm is not None and wm >= self.sweep_at:
            self._sweep(wm)
        sources = self.buffer.n_parts - f.links
        targets = [(shard_key(s), s, f.customer_parts(sources)) for s in range(f.shards)]
        return dead + emit(identity_key(self.number), targets, outs, self.buffer)

    def _live(self, x: str, ts: int) -> list[Any] | None:
        st = self.anons.get(x)
        if st is not None and st[LAST_SEEN] <= ts - self.config.ttl:
            del self.anons[x]  # idle too long: forgotten, as the sweep would have
            return None
        return st

    def _remember(self, st: list[Any], ev: Event) -> None:
        st[LAST_SEEN] = ev.ts
        st[RECORD] = 1
        history: list[Event] = st[HISTORY]
        mid = ev.message_id
        if mid and any(h.message_id == mid for h in history):
            return  # a duplicate: the anonymous customer's shard drops it too
        history.append(ev)
        horizon = ev.ts - self.config.history_window
        while len(history) > self.config.history_events or history[0].ts <= horizon:
            del history[0]
            self.stats["history_dropped"] += 1

    def _link(self, link: Event, outs: dict[str, list[Event]],
              dead: list[tuple[str, Any]]) -> None:
        x, user, ts = link.anonymous_id or "", link.customer_id, link.ts
        st = self._live(x, ts)
        if st is not None and st[USER] is not None:
            st[LAST_SEEN] = ts
            if st[USER] != user:
                self.stats["already_linked"] += 1
                dead.append(("dead", refusal(
                    "already_linked",
                    f"anonymous id {log_id(x)} not linked to customer {log_id(user)}: it "
                    f"belongs to customer {log_id(st[USER])} since {st[LINKED_AT]} (an "
                    "anonymous id never moves from one user to another)", x, user, ts)))
            return
        f = self.fanout
        if st is not None and st[HISTORY]:
            history = tuple(st[HISTORY])
            outs.setdefault(shard_key(shard_of(user, f.shards)), []).append(Event(
                ts, user, link.offset - 1, link.part, Kind.MERGE, "", anonymous_id=x,
                history=history))
            self.stats["merges"] += 1
            self.stats["merged_events"] += len(history)
        if st is not None and st[RECORD]:
            key = anonymous_key(x)
            outs.setdefault(shard_key(shard_of(key, f.shards)), []).append(Event(
                ts, key, link.offset, link.part, Kind.RETIRE, ""))
        self.anons[x] = [user, ts, ts, [], 0]

    def _sweep(self, wm: int) -> None:
        # Forgetting ids idle for the ttl changes no output: _live forgets them the same
        # way when their next event comes. Once a day of event time at most.
        horizon = wm - self.config.ttl
        for x in [x for x, st in self.anons.items() if st[LAST_SEEN] <= horizon]:
            del self.anons[x]
        self.sweep_at = wm + min(self.config.ttl, 86_400_000)



