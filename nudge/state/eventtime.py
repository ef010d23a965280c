"""An event-time buffer for the identity steps: events of many input paths, released in the
one event order once every input's watermark has passed them.

The same clock as a customer shard (nudge/state/shard.py): every ShardChunk carries its input
part's watermark after that part's events; the buffer's watermark is the minimum over all
parts (a part that ended counts as +inf; when all ended, the largest time any of them saw).
A part is a source partition or an upstream identity shard: each path reports its own
watermark, so the order of chunks between paths never matters.

The order is (time, customer, source position, kind). A MERGE made from a link takes the
position just before the event that carried the link (offset - 1), so the history runs
first, as it happened first; the kind breaks the one tie that leaves, with the partition's
previous record if it is the same customer's at the same instant.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Final

from nudge.core.events import Event
from nudge.core.records import ShardChunk

event_order: Final = attrgetter("ts", "customer_id", "offset", "part", "kind")


FOREVER: Final = 4_611_686_018_427_387_904  # 2**62


class EventTimeBuffer:
    __slots__ = ("emitted", "n_parts", "part_final", "part_wm", "pending")

    def __init__(self, resume: dict[str, Any] | None = None) -> None:
        self.pending: list[Event] = []
        self.part_wm: dict[str, int] = {}
        self.part_final: dict[str, int | None] = {}
        self.n_parts = 0
        self.emitted: tuple[int | None, bool] | None = None
        if resume is not None:
            self.pending = list(resume["pending"])
            self.part_wm = dict(resume["part_wm"])
            self.part_final = dict(resume["part_final"])
            self.n_parts = resume["n_parts"]
            e = resume["emitted"]
            self.emitted = (e[0], e[1]) if e is not None else None

    def observe(self, chunk: ShardChunk) -> None:
        if chunk.events:
            self.pending.extend(chunk.events)
        self.n_parts = chunk.n_parts
        if chunk.final:
            self.part_final[chunk.part] = chunk.max_ts
        elif chunk.watermark is not None:
            prev = self.part_wm.get(chunk.part)
            if prev is None or chunk.watermark > prev:
                self.part_wm[chunk.part] = chunk.watermark

    def watermark(self) -> tuple[int | None, bool]:
        """(watermark, all inputs ended). None until every part has reported."""
        if not self.n_parts:
            return None, False
        if len(self.part_final) >= self.n_parts:
            ends = [t for t in self.part_final.values() if t is not None]
            ends.extend(self.part_wm.values())
            return (max(ends) if ends else None), True
        open_parts = [wm for p, wm in self.part_wm.items() if p not in self.part_final]
        if len(open_parts) + len(self.part_final) < self.n_parts:
            return None, False
        return min(open_parts), False

    def ready(self) -> tuple[list[Event], int | None, bool]:
        """The events the watermark has passed, in the event order; the watermark; final."""
        wm, final = self.watermark()
        if wm is None and not final:
            return [], None, False
        pending = self.pending
        if final:
            ready, self.pending = pending, []
        else:
            ready = [ev for ev in pending if ev.ts < wm]  # type: ignore[operator]
            if ready:
                self.pending = [ev for ev in pending if ev.ts >= wm]  # type: ignore[operator]
        ready.sort(key=event_order)
        return ready, wm, final

    def moved(self) -> tuple[int | None, bool] | None:
        """The (watermark, final) to tell downstream, if it changed since it was last told."""
        state = self.watermark()
        if state == self.emitted or (state[0] is None and not state[1]):
            return None
        self.emitted = state
        return state

    def snapshot(self) -> dict[str, Any]:
        return {"pending": self.pending, "part_wm": self.part_wm,
                "part_final": self.part_final, "n_parts": self.n_parts,
                "emitted": self.emitted}
