"""The `profiles` sink: committed records into the queryable profile view (nudge/state/profiles.py).

    in:  ("profiles", ProfileWrite)   (one sink partition: RocksDB allows one writer process)

Stateless: the view is a cache of the shards' snapshots, rewritten by key, so writes that
repeat after a resume are harmless.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from nudge.core.records import ProfileWrite
from nudge.state.profiles import ProfileStore


class _ProfilePartition(StatefulSinkPartition[ProfileWrite, None]):
    def __init__(self, path: str) -> None:
        self.store = ProfileStore(path)

    def write_batch(self, values: list[ProfileWrite]) -> None:
        self.store.write([(w.key, w.value) for w in values])

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.store.close()


class ProfileSink(FixedPartitionedSink[ProfileWrite, None]):
    def __init__(self, path: str) -> None:
        self.path = path

    def list_parts(self) -> list[str]:
        return ["profiles"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _ProfilePartition:
        return _ProfilePartition(self.path)
