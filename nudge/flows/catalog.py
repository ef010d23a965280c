"""The catalog's parse step: raw catalog records -> updates, dead letters and the catalog
partition's watermark, per source partition (a catalog file or a catalog topic partition).

Each partition keeps an event clock like an event partition's (nudge/flows/parse.py): its
watermark is the largest update time seen minus `events.allowed_lateness`, or a live
partition's idle heartbeat; an update older than the watermark is applied at it. The decide
step releases a decision only once every catalog partition's watermark has passed its due
time too, so the catalog it reads is a function of event time alone.

    in:  (partition key, RawChunk)
    out: ("decide", CatalogChunk)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.core import metrics
from nudge.core.config import EventsConfig
from nudge.core.deadletter import DeadLetter
from nudge.core.events import Position, RawChunk
from nudge.core.snapshot import check, stamp
from nudge.scoring.catalog import CatalogUpdate
from nudge.scoring.catalogfeed import FeedError, parse_raw

STAGE = "catalog"
SNAPSHOT_FORMAT = 1  # each catalog partition's clock (nudge/core/snapshot.py)


@dataclass(frozen=True, slots=True)
class CatalogChunk:
    """A catalog partition's updates of one chunk, then its watermark."""

    part: str
    n_parts: int
    updates: list[CatalogUpdate]
    dead: list[DeadLetter]
    watermark: int | None
    final: bool


class CatalogClock:
    """A catalog partition's event clock (see the module docstring)."""

    def __init__(self, lateness: int, resume: dict[str, Any] | None = None) -> None:
        self.lateness = lateness
        self.max_ts: int | None = None
        self.heartbeat: int | None = None
        if resume is not None:
            self.max_ts, self.heartbeat = resume["max_ts"], resume["heartbeat"]

    def floor(self) -> int | None:
        if self.max_ts is None:
            return self.heartbeat
        wm = self.max_ts - self.lateness
        return wm if self.heartbeat is None or wm >= self.heartbeat else self.heartbeat

    def admit(self, updates: list[CatalogUpdate]) -> list[CatalogUpdate]:
        out = []
        for u in updates:
            floor = self.floor()
            if floor is not None and u.ts < floor:
                out.append(u.at(floor))
                continue
            if self.max_ts is None or u.ts > self.max_ts:
                self.max_ts = u.ts
            out.append(u)
        return out

    def snapshot(self) -> dict[str, Any]:
        return {"max_ts": self.max_ts, "heartbeat": self.heartbeat}


def parse_catalog_chunk(chunk: RawChunk) -> tuple[list[CatalogUpdate], list[DeadLetter]]:
    updates: list[CatalogUpdate] = []
    dead: list[DeadLetter] = []
    for offset, raw in chunk.records:
        try:
            updates.append(parse_raw(raw, chunk.part, offset))
        except FeedError as exc:
            dead.append(DeadLetter(STAGE, exc.reason, exc.detail,
                                   Position(chunk.source, chunk.partition, offset), raw))
    return updates, dead


class CatalogParseLogic(StatefulBatchLogic[RawChunk, CatalogChunk, dict[str, Any]]):
    def __init__(self, events: EventsConfig, resume: dict[str, Any] | None) -> None:
        if resume is not None:
            resume = check("catalog_parse", resume, SNAPSHOT_FORMAT)
        self.clock = CatalogClock(events.allowed_lateness, resume)

    def on_batch(self, values: list[RawChunk]) -> tuple[list[CatalogChunk], bool]:
        out = []
        for chunk in values:
            updates, dead = parse_catalog_chunk(chunk)
            updates = self.clock.admit(updates)
            if chunk.heartbeat is not None and (self.clock.heartbeat is None
                                                or chunk.heartbeat > self.clock.heartbeat):
                self.clock.heartbeat = chunk.heartbeat
            for d in dead:
                metrics.DEAD_LETTERS.labels(STAGE, d.reason).inc()
            out.append(CatalogChunk(chunk.part, chunk.n_parts, updates, dead,
                                    self.clock.floor(), chunk.final))
        return out, False

    def snapshot(self) -> dict[str, Any]:
        return stamp(SNAPSHOT_FORMAT, self.clock.snapshot())
