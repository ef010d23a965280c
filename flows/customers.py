"""The customers step: one Shard per shard key, fed whole batches (`stateful_batch`).

    in:  (shard key, ShardChunk)
    out: (shard key, Decision | ShardMark)

All logic is in state/shard.py; this module only holds the shard for Bytewax, counts, and
makes `snapshot()` the shard's commit.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bytewax.operators import StatefulBatchLogic

from flows import metrics
from nudge.records import Decision, ShardChunk, ShardMark
from state.policy import Policy
from state.shard import Shard


class CustomersLogic(StatefulBatchLogic[ShardChunk, Decision | ShardMark, dict[str, Any]]):
    def __init__(self, policy: Policy, dedup_window: int, resume: dict[str, Any] | None) -> None:
        # Bytewax gives a builder only the resume state, not the key: the shard learns its
        # number from its first chunk (and keeps it in the snapshot).
        self.shard = Shard(-1, policy, dedup_window, resume)

    def on_batch(self, values: list[ShardChunk]) -> tuple[list[Decision | ShardMark], bool]:
        dups = self.shard.stats["duplicates"]
        decisions, mark = self.shard.process(values)
        if self.shard.stats["duplicates"] != dups:
            new = self.shard.stats["duplicates"] - dups
            metrics.DUPLICATES.labels(str(self.shard.shard)).inc(new)
        out: list[Decision | ShardMark] = list(decisions)
        if decisions:
            counts = Counter((d.trigger, d.outcome, d.reason or "") for d in decisions)
            for labels, n in counts.items():
                metrics.DECISIONS.labels(*labels).inc(n)
        if mark is not None:
            out.append(mark)
        return out, False

    def snapshot(self) -> dict[str, Any]:
        return self.shard.snapshot()
