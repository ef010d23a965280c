"""What one batch of a shard produces, by kind: the customers step's typed output.

A shard's batch yields decisions, segment changes, outcomes, item-statistics deltas, profile
writes, address changes and a watermark mark. They travel as one ShardOutput per batch, each
kind in its own list, so the dataflow takes each kind from its field (nudge/flows/steps.py)
instead of sorting a mixed stream by type, and decide gets one DecideInput per batch instead
of one item per record (fewer items through Bytewax, and across processes one pickle per
batch).

Not compiled (nudge/core/compiled.py): Bytewax pickles these between workers, and plain
dataclasses pickle by reference to their module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nudge.core.records import (
    AddressChange,
    Decision,
    Outcome,
    ProfileWrite,
    SegmentChange,
    ShardMark,
)
from nudge.scoring.itemstats import ItemDelta


@dataclass(frozen=True, slots=True)
class DecideInput:
    """What decide gets from one batch of a customer shard (its decisions that send nothing,
    deltas, mark) or from the addresses step (a checked decision, or a mark)."""

    decisions: list[Decision] = field(default_factory=list)
    deltas: list[ItemDelta] = field(default_factory=list)  # item statistics of ended buckets
    mark: ShardMark | None = None  # the shard's watermark, when it moved


@dataclass(frozen=True, slots=True)
class ShardOutput:
    """Everything one batch of a shard produced (nudge/state/shard.py `Shard.process`)."""

    decisions: list[Decision] = field(default_factory=list)
    deltas: list[ItemDelta] = field(default_factory=list)
    mark: ShardMark | None = None
    segments: list[SegmentChange] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    profiles: list[ProfileWrite] = field(default_factory=list)  # records committed last epoch
    addresses: list[AddressChange] = field(default_factory=list)  # for the addresses step

    def empty(self) -> bool:
        return not (self.decisions or self.deltas or self.mark is not None or self.segments
                    or self.outcomes or self.profiles or self.addresses)
