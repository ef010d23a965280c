"""Route: a partition's parsed chunk -> one chunk per shard, ticks copied to every shard.

Events go to the shard that owns their customer (nudge.core.ids.shard_of). The chunk's watermark
goes to every shard when it moved (a "tick"), riding the same path as the partition's
events, so no shard sees a partition's tick before that partition's earlier events.

    in:  (partition key, ParsedChunk)
    out: (shard key, ShardChunk)
"""

from __future__ import annotations

import zlib

from nudge.core.records import ParsedChunk, ShardChunk


def shard_key(shard: int) -> str:
    """Shard keys are stored schema (recovery state is keyed by them): never change this."""
    return f"shard-{shard:04d}"


def route(item: tuple[str, ParsedChunk], shards: int) -> list[tuple[str, ShardChunk]]:
    _, chunk = item
    crc32 = zlib.crc32
    buckets: dict[int, list] = {}
    for ev in chunk.events:
        s = crc32(ev.customer_id.encode()) % shards
        bucket = buckets.get(s)
        if bucket is None:
            buckets[s] = [ev]
        else:
            bucket.append(ev)
    tick = (chunk.watermark is not None and chunk.tick) or chunk.final
    targets = range(shards) if tick else sorted(buckets)
    return [
        (shard_key(s), ShardChunk(s, chunk.part, chunk.n_parts, buckets.get(s, []),
                                  chunk.watermark, chunk.final, chunk.max_ts))
        for s in targets
    ]
