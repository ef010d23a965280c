"""The `profiles` sink: committed records into the queryable profile view (nudge/state/profiles.py).

    in:  ("profiles", ProfileWrite)   (one sink partition: RocksDB allows one writer process)

Stateless: the view is a cache of the shards' snapshots, rewritten by key, so writes that
repeat after a resume are harmless. Its snapshot is an empty state of format 1 (nudge/core/
snapshot.py), so a later version can keep something there and still read this one.
"""

from __future__ import annotations

from typing import Any, Final

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from nudge.core.records import ProfileWrite
from nudge.core.snapshot import check, stamp
from nudge.state.profiles import ProfileStore

State = dict[str, Any]
SNAPSHOT_FORMAT: Final = 1


class _ProfilePartition(StatefulSinkPartition[ProfileWrite, State]):
    def __init__(self, path: str, resume: State | None, step: str = "profiles") -> None:
        if resume is not None:
            check(step, resume, SNAPSHOT_FORMAT)
        self.store = ProfileStore(path)

    def write_batch(self, values: list[ProfileWrite]) -> None:
        self.store.write([(w.key, w.value) for w in values])

    def snapshot(self) -> State:
        return stamp(SNAPSHOT_FORMAT, {})

    def close(self) -> None:
        self.store.close()


class ProfileSink(FixedPartitionedSink[ProfileWrite, State]):
    def __init__(self, path: str) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return ["profiles"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str,
                   resume_state: State | None) -> _ProfilePartition:
        return _ProfilePartition(self.path, resume_state, step_id)
