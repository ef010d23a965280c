"""Decide: one place where every shard's decisions meet, in event-time order.

Shards reach stages independently and at different speeds. Decide buffers their decisions
until every shard's watermark has passed them, then releases them sorted by
(due, customer, trigger, stage): the decision log, the send order and (later) the model's
learning order are then the same whatever the worker count, batching or pacing.

Item shapes in and out of the step (see flows/dataflow.py):
    in:  ("decide", Decision | ShardMark)
    out: ("decide", Decision)
"""

from __future__ import annotations

from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.records import Decision, ShardMark

DECIDE_KEY = "decide"


class Decider:
    """Pure buffer-and-release logic, tested without Bytewax."""

    def __init__(self, shards: int, resume: dict[str, Any] | None = None) -> None:
        self.shards = shards
        self.pending: list[Decision] = []
        self.marks: dict[int, tuple[int | None, bool]] = {}
        if resume is not None:
            self.pending = list(resume["pending"])
            self.marks = {int(k): (v[0], v[1]) for k, v in resume["marks"].items()}

    def watermark(self) -> tuple[int | None, bool]:
        if len(self.marks) < self.shards:
            return None, False
        if all(final for _, final in self.marks.values()):
            return None, True
        values = [wm for wm, final in self.marks.values() if not final and wm is not None]
        if len(values) < sum(1 for _, final in self.marks.values() if not final):
            return None, False
        return min(values), False

    def feed(self, items: list[Decision | ShardMark]) -> list[Decision]:
        for item in items:
            if isinstance(item, ShardMark):
                self.marks[item.shard] = (item.watermark, item.final)
            else:
                self.pending.append(item)
        return self.release()

    def release(self, everything: bool = False) -> list[Decision]:
        if not self.pending:
            return []
        wm, final = self.watermark()
        if everything or final:
            ready, self.pending = self.pending, []
        elif wm is None:
            return []
        else:
            ready = [d for d in self.pending if d.due < wm]
            if not ready:
                return []
            self.pending = [d for d in self.pending if d.due >= wm]
        ready.sort(key=Decision.sort_key)
        return ready

    def snapshot(self) -> dict[str, Any]:
        return {"pending": list(self.pending), "marks": dict(self.marks)}


class DecideLogic(StatefulBatchLogic[Any, Decision, dict[str, Any]]):
    def __init__(self, shards: int, resume: dict[str, Any] | None) -> None:
        self.decider = Decider(shards, resume)

    def on_batch(self, values: list[Any]) -> tuple[list[Decision], bool]:
        return self.decider.feed(values), False

    def on_eof(self) -> tuple[list[Decision], bool]:
        # Inputs ended: nothing can still arrive below any pending decision's due time.
        return self.decider.release(everything=True), False

    def snapshot(self) -> dict[str, Any]:
        return self.decider.snapshot()
