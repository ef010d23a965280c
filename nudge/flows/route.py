"""Route: a partition's parsed chunk -> one chunk per destination key, ticks copied to all.

Events go to the customer shard that owns their customer (nudge.core.ids.shard_of), except,
with identity on (nudge/state/links.py, identity.py), those the identity steps must see:

    an event with a userId and an anonymousId, an alias  -> links-NNNN (by the user)
    an event with only an anonymousId                    -> identity-NNNN (by the id)

The chunk's watermark goes to every destination when it moved (a "tick"), riding the same
path as the partition's events, so no step sees a partition's tick before that partition's
earlier events. A destination counts one input part per source partition and one per
identity shard upstream of it (`n_parts`), and waits for all of them.

    in:  (partition key, ParsedChunk)
    out: (shard key | links key | identity key, ShardChunk)
"""

from __future__ import annotations

from dataclasses import dataclass

from nudge.core.events import Kind
from nudge.core.ids import ANON_PREFIX, identity_key, links_key, shard_key, shard_of
from nudge.core.records import ParsedChunk, ShardChunk

__all__ = ["Routes", "route", "shard_key"]


@dataclass(frozen=True, slots=True)
class Routes:
    """The destinations: customer shards, and the identity steps' shards (0: identity off)."""

    shards: int
    links: int = 0
    identity: int = 0


def route(item: tuple[str, ParsedChunk], shards: int | Routes) -> list[tuple[str, ShardChunk]]:
    r = shards if isinstance(shards, Routes) else Routes(shards)
    _, chunk = item
    n = r.shards
    identity = r.identity
    buckets: dict[int, list] = {}
    to_links: dict[int, list] = {}
    to_identity: dict[int, list] = {}
    for ev in chunk.events:
        if ev.anonymous_id is not None:
            if identity:
                to_links.setdefault(shard_of(ev.customer_id, r.links), []).append(ev)
                continue
            if ev.kind == Kind.ALIAS:  # without identity: nothing to link
                continue
            ev = ev.keyed(ev.customer_id, None)  # noqa: PLW2901
        elif identity and ev.customer_id.startswith(ANON_PREFIX):
            to_identity.setdefault(shard_of(ev.customer_id[len(ANON_PREFIX):], identity),
                                   []).append(ev)
            continue
        s = shard_of(ev.customer_id, n)
        bucket = buckets.get(s)
        if bucket is None:
            buckets[s] = [ev]
        else:
            bucket.append(ev)
    tick = (chunk.watermark is not None and chunk.tick) or chunk.final
    sources = chunk.n_parts
    out = [
        (shard_key(s), ShardChunk(s, chunk.part, sources + identity,
                                  buckets.get(s, []), chunk.watermark, chunk.final,
                                  chunk.max_ts))
        for s in (range(n) if tick else sorted(buckets))
    ]
    if identity:
        out.extend(
            (links_key(k), ShardChunk(k, chunk.part, sources, to_links.get(k, []),
                                      chunk.watermark, chunk.final, chunk.max_ts))
            for k in (range(r.links) if tick else sorted(to_links)))
        out.extend(
            (identity_key(k), ShardChunk(k, chunk.part, sources + r.links,
                                         to_identity.get(k, []), chunk.watermark,
                                         chunk.final, chunk.max_ts))
            for k in (range(identity) if tick else sorted(to_identity)))
    return out
