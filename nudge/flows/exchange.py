"""What crosses between workers, pickled in C: the flow's slotted dataclasses get a reducer
that hands pickle the class and a tuple of its fields (`operator.attrgetter`).

Bytewax pickles every item that moves between processes, and Timely serializes each
message twice (once to measure it, once to write it). A slotted dataclass without a reducer
pickles through `dataclasses._dataclass_getstate`, a Python loop over `fields()` per object:
with the demo's configuration that was most of a cluster's exchange cost (a ShardOutput of
decisions with their contexts, a DecideInput, a checked decision: each several objects
deep). The reducer makes the same pickle in C; unpickling calls the class with the fields in
order, as the generic form's `__setstate__` zips them. Snapshots that hold these records
(decide's pending decisions, for one) pickle the same way: the fields' order is stored
schema, as it already was; a snapshot written with the generic form still loads.

Registered in `copyreg`'s table by `register()`, which `build_flow` calls: in every process
that builds the flow. ItemDelta keeps its own `__reduce__` (compressed JSON).
"""

from __future__ import annotations

import copyreg
import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec

from nudge.core.records import (
    AddressChange,
    DeadLetter,
    Decision,
    Email,
    EmailContext,
    Erasure,
    Event,
    Incentive,
    Outcome,
    ParsedChunk,
    Position,
    ProfileWrite,
    RawChunk,
    SegmentChange,
    ShardChunk,
    ShardMark,
    Traits,
)
from nudge.flows.catalog import CatalogChunk
from nudge.scoring.catalog import CatalogEntry, CatalogUpdate
from nudge.state.outputs import DecideInput, ShardOutput

RECORDS: tuple[type, ...] = (
    AddressChange, CatalogChunk, CatalogEntry, CatalogUpdate, DeadLetter, DecideInput,
    Decision, Email, EmailContext, Erasure, Incentive, Outcome, ParsedChunk, Position,
    ProfileWrite, RawChunk, SegmentChange, ShardMark, ShardOutput, Traits,
)

# A shard chunk's events (msgspec Structs) as one MessagePack value: encoding and decoding
# them is about twice as fast as pickling each Struct's fields, and Timely does it twice.
_encode_events = msgspec.msgpack.Encoder().encode
_decode_events = msgspec.msgpack.Decoder(list[Event]).decode


def _shard_chunk(shard: int, part: str, n_parts: int, events: bytes, watermark: int | None,
                 final: bool, max_ts: int | None) -> ShardChunk:
    return ShardChunk(shard, part, n_parts, _decode_events(events), watermark, final, max_ts)


def _reduce_shard_chunk(c: ShardChunk) -> tuple[Any, ...]:
    return (_shard_chunk, (c.shard, c.part, c.n_parts, _encode_events(c.events), c.watermark,
                           c.final, c.max_ts))


def reducer(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """`obj -> (cls, (field values in order))`, for every field an `__init__` argument."""
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: a field outside __init__ cannot be rebuilt")
    names = [f.name for f in fields]
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (cls, (one(obj),))
    get = attrgetter(*names)
    return lambda obj: (cls, get(obj))


def register(records: tuple[type, ...] = RECORDS) -> None:
    """Idempotent: the table maps each class to its reducer."""
    for cls in records:
        copyreg.pickle(cls, reducer(cls))
    copyreg.pickle(ShardChunk, _reduce_shard_chunk)

