"""The links step: which anonymous ids a user may take, decided per user in event time.

Keyed by the user's identity shard. It receives every event that carries both a userId
and an anonymousId, and every `alias`, from every source partition, and runs them in the
one event order (nudge/state/eventtime.py). For each (user, anonymous id) pair it has not
seen within `identity.anonymous_ids_window` it decides:

  - accept: a LINK record goes to the identity shard of the anonymous id
    (nudge/state/identity.py), which moves the anonymous history to the user;
  - refuse, as Segment does, when the user already took `identity.max_anonymous_ids` other
    anonymous ids within the window (`too_many_anonymous_ids`): a dead letter, stage
    "identity", whose raw bytes are the refused link as a Segment `alias` call (refeed it
    after raising the limit).

The event itself is the user's own: it goes on, through an identity shard that passes it
to the user's customer shard, without its anonymous id (only events that reach a user
through the anonymous id alone keep it, see nudge.core.records.Event). An alias goes no
further than its link.

State is bounded: per user, the anonymous ids of the window (at most the limit accepted,
and a few refused ones, so a flood is dead-lettered once per id, not once per event).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from nudge.core.config import IdentityConfig
from nudge.core.deadletter import DeadLetter
from nudge.core.events import Event, Kind
from nudge.core.ids import identity_key, links_key, log_id, shard_of, user_of
from nudge.core.records import ShardChunk
from nudge.core.snapshot import check, stamp
from nudge.core.timefmt import to_iso
from nudge.state.eventtime import EventTimeBuffer

MAX_REFUSED: Final = 16  # refused ids remembered per user (beyond: refused again, silently)
SNAPSHOT_FORMAT: Final = 1  # the links and identity shards (nudge/core/snapshot.py)


def alias_bytes(anonymous_id: str, user_key: str, ts: int) -> bytes:
    """A link as the Segment `alias` call that makes it: the raw bytes of a refusal."""
    return json.dumps({"type": "alias", "previousId": anonymous_id,
                       "userId": user_of(user_key), "timestamp": to_iso(ts)}).encode()


def refusal(reason: str, detail: str, anonymous_id: str, user_key: str, ts: int) -> DeadLetter:
    return DeadLetter("identity", reason, detail, None, alias_bytes(anonymous_id, user_key, ts))


class Fanout:
    """Where a stage's chunks go, and how many input parts each destination counts."""

    def __init__(self, shards: int, links: int, identity: int) -> None:
        self.shards, self.links, self.identity = shards, links, identity

    def customer_parts(self, sources: int) -> int:
        return sources + self.identity

    def identity_parts(self, sources: int) -> int:
        return sources + self.links


def emit(part: str, targets: list[tuple[str, int, int]], outs: dict[str, list[Event]],
         buffer: EventTimeBuffer) -> list[tuple[str, Any]]:
    """One chunk per target: its events, and the stage's watermark when it moved (to every
    target: a watermark is a promise to all of them)."""
    moved = buffer.moved()
    wm, final = buffer.watermark()
    out: list[tuple[str, Any]] = []
    for key, number, parts in targets:
        events = outs.get(key)
        if moved is None and not events:
            continue
        out.append((key, ShardChunk(number, part, parts, events or [], wm, final,
                                    wm if final else None)))
    return out


class IdentityStage:
    """What a links shard and an identity shard share: their event-time buffer, counters and
    sweep time, restored by the constructor (`resume`, nudge/core/snapshot.py)."""

    STEP: ClassVar[str]  # the Bytewax step, named by a refused snapshot
    STATS: ClassVar[tuple[str, ...]]

    def __init__(self, number: int, config: IdentityConfig, fanout: Fanout,
                 resume: dict[str, Any] | None = None) -> None:
        snap = check(self.STEP, resume, SNAPSHOT_FORMAT) if resume is not None else None
        self.number = number
        self.config = config
        self.fanout = fanout
        self.buffer = EventTimeBuffer(snap["buffer"] if snap else None)
        self.stats: dict[str, int] = dict(snap["stats"]) if snap else dict.fromkeys(
            self.STATS, 0)
        self.sweep_at: int = snap["sweep_at"] if snap else 0
        self.restore_own(snap)

    def restore_own(self, snap: dict[str, Any] | None) -> None:
        """The shard's own table from the snapshot (empty without one)."""
        raise NotImplementedError

    def own(self) -> dict[str, Any]:
        """The shard's own table, for the snapshot."""
        raise NotImplementedError

    def process(self, chunks: list[ShardChunk]) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def take(self, chunks: list[ShardChunk]) -> tuple[list[Event], int | None]:
        """Buffer `chunks`; the events the watermark has passed, in event order, and it."""
        for chunk in chunks:
            self.number = chunk.shard
            self.buffer.observe(chunk)
        ready, wm, _ = self.buffer.ready()
        return ready, wm

    def snapshot(self) -> dict[str, Any]:
        return stamp(SNAPSHOT_FORMAT, {"buffer": self.buffer.snapshot(), **self.own(),
                                       "stats": self.stats, "sweep_at": self.sweep_at})


class LinkShard(IdentityStage):
    STEP = "links"
    STATS = ("links", "too_many_anonymous_ids")

    def restore_own(self, snap: dict[str, Any] | None) -> None:
        # user key -> [[anonymous id, first seen, accepted 1 | refused 0], ...]
        self.users: dict[str, list[list[Any]]] = dict(snap["users"]) if snap else {}

    def own(self) -> dict[str, Any]:
        return {"users": self.users}

    def process(self, chunks: list[ShardChunk]) -> list[tuple[str, Any]]:
        ready, wm = self.take(chunks)
        sources = self.buffer.n_parts
        outs: dict[str, list[Event]] = {}
        dead: list[tuple[str, Any]] = []
        f = self.fanout
        for ev in ready:
            x = ev.anonymous_id
            if x is not None:
                verdict = self._decide(ev.customer_id, x, ev.ts)
                if verdict is True:
                    link = Event(ev.ts, ev.customer_id, ev.offset, ev.part, Kind.LINK, "",
                                 anonymous_id=x)
                    outs.setdefault(identity_key(shard_of(x, f.identity)), []).append(link)
                elif verdict is not None:
                    dead.append(("dead", verdict))
            if ev.kind != Kind.ALIAS:
                # the user's own event, on through an identity shard (one path fewer for the
                # customer shards to wait for)
                own = ev.keyed(ev.customer_id, None)
                outs.setdefault(identity_key(self.number % f.identity), []).append(own)
        if wm is not None and wm >= self.sweep_at:
            self._sweep(wm)
        targets = [(identity_key(i), i, f.identity_parts(sources)) for i in range(f.identity)]
        return dead + emit(links_key(self.number), targets, outs, self.buffer)

    def _decide(self, user: str, x: str, ts: int) -> bool | DeadLetter | None:
        """True: a new link; a DeadLetter: refused; None: nothing new."""
        window = self.config.anonymous_ids_window
        entries = self.users.get(user)
        if entries is None:
            entries = self.users[user] = []
        elif entries[0][1] <= ts - window:
            entries[:] = [e for e in entries if e[1] > ts - window]
        for e in entries:
            if e[0] == x:
                return None
        taken = sum(e[2] for e in entries)
        limit = self.config.max_anonymous_ids
        if taken >= limit:
            self.stats["too_many_anonymous_ids"] += 1
            if len(entries) - taken >= MAX_REFUSED:
                return None
            entries.append([x, ts, 0])
            return refusal("too_many_anonymous_ids",
                           f"anonymous id {log_id(x)} not linked to customer {log_id(user)}: "
                           f"they took {taken} anonymous ids within "
                           f"identity.anonymous_ids_window (identity.max_anonymous_ids = "
                           f"{limit}); the event itself was applied to the customer",
                           x, user, ts)
        entries.append([x, ts, 1])
        self.stats["links"] += 1
        return True

    def _sweep(self, wm: int) -> None:
        # Forgetting what has left the window changes no decision: _decide prunes the same
        # entries before it reads them. Once a day of event time.
        horizon = wm - self.config.anonymous_ids_window
        for user in [u for u, es in self.users.items() if es[-1][1] <= horizon]:
            del self.users[user]
        self.sweep_at = wm + self.config.anonymous_ids_window // 7

