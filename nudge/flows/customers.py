"""The customers step: one Shard per shard key, fed whole batches (`stateful_batch`).

    in:  (shard key, ShardChunk)
    out: (shard key, ShardOutput)   one per batch: decisions, deltas, mark, segment changes,
                                    outcomes, profile writes, address changes, each in its
                                    own list

All logic is in nudge/state/shard.py; this module only holds the shard for Bytewax, counts, and
makes `snapshot()` the shard's commit.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bytewax.operators import StatefulBatchLogic

from nudge.core import metrics
from nudge.core.records import OUTCOME_ERASED, ShardChunk
from nudge.state.outputs import ShardOutput
from nudge.state.program import Program
from nudge.state.shard import Shard


class CustomersLogic(StatefulBatchLogic[ShardChunk, ShardOutput, dict[str, Any]]):
    def __init__(self, program: Program, profiles: bool, resume: dict[str, Any] | None, *,
                 disk: tuple[str, int] | None = None) -> None:
        # Bytewax gives a builder only the resume state, not the key: the shard learns its
        # number from its first chunk (and keeps it in the snapshot).
        self.shard = Shard(-1, program, resume, profiles=profiles, disk=disk)

    def on_batch(self, values: list[ShardChunk]) -> tuple[list[ShardOutput], bool]:
        dups = self.shard.stats["duplicates"]
        out = self.shard.process(values)
        if self.shard.stats["duplicates"] != dups:
            new = self.shard.stats["duplicates"] - dups
            metrics.DUPLICATES.labels(str(self.shard.shard)).inc(new)
        _count(out)
        return ([] if out.empty() else [out]), False

    def on_eof(self) -> tuple[list[ShardOutput], bool]:
        # The profile view would only get the last commit with a next batch that never comes.
        if not self.shard.profiles:
            return [], False
        self.shard.snapshot()
        return [ShardOutput(profiles=self.shard.publish())], False

    def snapshot(self) -> dict[str, Any]:
        return self.shard.snapshot()


def _count(out: ShardOutput) -> None:
    if out.decisions:
        decisions: Counter[tuple[str, str, str]] = Counter(
            (d.trigger, d.outcome, d.reason or "") for d in out.decisions
            if d.outcome != OUTCOME_ERASED)  # an erasure on its way to the ledger
        for labels, n in decisions.items():
            metrics.DECISIONS.labels(*labels).inc(n)
    if out.segments:
        segments: Counter[tuple[str, str]] = Counter((s.segment, s.change) for s in out.segments)
        for seg_labels, n in segments.items():
            metrics.SEGMENT_CHANGES.labels(*seg_labels).inc(n)
