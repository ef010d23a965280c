"""The parse step: raw chunks -> events, dead letters and the partition's watermark.

Validation is nudge/flows/contract.py (pure, tested without Bytewax); this module runs it per
chunk, in partition order, and keeps the partition's event clock (`PartitionClock`), which
turns event times into the partition's watermark and raises events that arrive later than
the allowed lateness up to it, so that no event can reach a shard behind a watermark it
has already seen (see README "Event time").

    in:  (partition key, RawChunk)
    out: (partition key, ParsedChunk)
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bytewax.operators import StatefulBatchLogic

from nudge.core import metrics
from nudge.core.config import EventsConfig, IdentityConfig
from nudge.core.deadletter import DeadLetter
from nudge.core.errors import InputError
from nudge.core.events import Event, Position, RawChunk
from nudge.core.records import ParsedChunk
from nudge.core.snapshot import check, stamp
from nudge.flows.contract import Ignored, Limits, Refused, parse_record

SNAPSHOT_FORMAT: Final = 1  # the partition clock (nudge/core/snapshot.py)

__all__ = ["Ignored", "Limits", "ParseLogic", "PartitionClock", "Refused", "parse_chunk",
           "parse_record"]


@dataclass(slots=True)
class PartitionClock:
    """A source partition's event-time clock, kept in partition order.

    The watermark is the largest event time seen minus the allowed lateness, or a live
    source's idle heartbeat, whichever is later. An event older than the watermark gets the
    watermark as its effective time: its effects then never land behind a decision a shard
    has already taken, so decisions do not depend on batching, pacing or worker count.
    """

    lateness: int
    max_ts: int | None = None
    heartbeat: int | None = None
    emitted: int | None = None
    late: int = 0

    def floor(self) -> int | None:
        if self.max_ts is None:
            return self.heartbeat
        wm = self.max_ts - self.lateness
        return wm if self.heartbeat is None or wm >= self.heartbeat else self.heartbeat

    def admit(self, events: list[Event]) -> list[Event]:
        """Raise late events to the watermark and advance the clock, in order."""
        floor = self.floor()
        max_ts = self.max_ts
        out = events
        for i, ev in enumerate(events):
            ts = ev.ts
            if floor is not None and ts < floor:
                self.late += 1
                if out is events:
                    out = list(events)
                out[i] = ev.at(floor)
            elif max_ts is None or ts > max_ts:
                max_ts = ts
                wm = ts - self.lateness
                if floor is None or wm > floor:
                    floor = wm
        self.max_ts = max_ts
        return out

    def observe_heartbeat(self, heartbeat: int) -> None:
        if self.heartbeat is None or heartbeat > self.heartbeat:
            self.heartbeat = heartbeat

    def tick(self) -> tuple[int | None, bool]:
        """The watermark now, and whether it moved since the last tick that was sent."""
        wm = self.floor()
        moved = wm is not None and (self.emitted is None or wm > self.emitted)
        if moved:
            self.emitted = wm
        return wm, moved


def part_ordinal(part: str) -> int:
    """A stable small int for a partition key: the last tie-breaker of the event order."""
    return zlib.crc32(part.encode())


def parse_chunk(chunk: RawChunk, limits: Limits,
                ignored_names: dict[str, int] | None = None,
                ) -> tuple[list[Event], list[DeadLetter], int]:
    """Parse a chunk's records in order: (events, dead letters, number ignored). A refused
    identifier gives both the event and a dead letter (stage "identity"). Ignored calls
    are counted by name into `ignored_names`."""
    events: list[Event] = []
    dead: list[DeadLetter] = []
    ignored = 0
    part = part_ordinal(chunk.part)
    append = events.append
    for offset, raw in chunk.records:
        try:
            append(parse_record(raw, limits, offset, part))
        except InputError as exc:
            dead.append(DeadLetter("parse", exc.reason, exc.detail,
                                   Position(chunk.source, chunk.partition, offset), raw))
        except Ignored as exc:
            ignored += 1
            if ignored_names is not None:
                name = str(exc)
                ignored_names[name] = ignored_names.get(name, 0) + 1
        except Refused as exc:
            append(exc.event)
            dead.append(DeadLetter("identity", exc.reason, exc.detail,
                                   Position(chunk.source, chunk.partition, offset), raw))
    return events, dead, ignored


class ParseLogic(StatefulBatchLogic[RawChunk, ParsedChunk, dict[str, Any]]):
    """The parse step for one source partition: its clock lives in the snapshot, next to
    the source's offset of the same epoch, so a resumed run assigns the same effective
    times and watermarks as an uninterrupted one.

        in:  (partition key, RawChunk)
        out: (partition key, ParsedChunk)
    """

    def __init__(self, events: EventsConfig, resume: dict[str, Any] | None,
                 clock: Callable[[], float] = time.time,
                 identity: IdentityConfig | None = None) -> None:
        self.events = events
        self.identity = identity
        self.clock = clock
        self.pclock = PartitionClock(events.allowed_lateness)
        if resume is not None:
            check("parse", resume, SNAPSHOT_FORMAT)
            self.pclock.max_ts = resume["max_ts"]
            self.pclock.heartbeat = resume["heartbeat"]
            self.pclock.emitted = resume["emitted"]

    def on_batch(self, values: list[RawChunk]) -> tuple[list[ParsedChunk], bool]:
        limits = Limits.from_config(self.events, now_ms=int(self.clock() * 1000),
                                    identity=self.identity)
        out = []
        names: dict[str, int] = {}
        for chunk in values:
            events, dead, ignored = parse_chunk(chunk, limits, names)
            late_before = self.pclock.late
            events = self.pclock.admit(events)
            if chunk.heartbeat is not None:
                self.pclock.observe_heartbeat(chunk.heartbeat)
            wm, moved = self.pclock.tick()
            _count(chunk.part, len(events), self.pclock.late - late_before, ignored, dead)
            out.append(ParsedChunk(chunk.part, chunk.n_parts, events, dead, wm, moved,
                                   chunk.final, self.pclock.max_ts))
        for name, n in names.items():
            metrics.IGNORED_BY_NAME.labels(name[:64]).inc(n)
        return out, False

    def snapshot(self) -> dict[str, Any]:
        c = self.pclock
        return stamp(SNAPSHOT_FORMAT,
                     {"max_ts": c.max_ts, "heartbeat": c.heartbeat, "emitted": c.emitted})


def _count(part: str, events: int, late: int, ignored: int, dead: list[DeadLetter]) -> None:
    if events:
        metrics.EVENTS.labels(part).inc(events)
    if late:
        metrics.LATE.labels(part).inc(late)
    if ignored:
        metrics.IGNORED.labels(part).inc(ignored)
    for d in dead:
        metrics.DEAD_LETTERS.labels(d.stage, d.reason).inc()
