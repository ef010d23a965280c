"""JSONL files as a bounded source: one partition per file, read in order, resumable.

Like Kafka partitions, files are the unit of order: all of one customer's events must be in
one file (split by customer, as Kafka splits by key), or their relative order is lost.

Each `next_batch()` returns one RawChunk of up to `batch_size` lines, keyed by the
partition; the last chunk of a file has `final=True`. The resume state is the byte offset
and line number of the next line, so a resumed run neither skips nor repeats a line
(format 2, nudge/core/snapshot.py; format 1 was the bare (offset, line) pair).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from nudge.core.errors import SourceError
from nudge.core.events import RawChunk
from nudge.core.snapshot import check, stamp

Item = tuple[str, RawChunk]
State = dict[str, Any]  # {"format": 2, "offset": byte offset, "line": next line number}
SNAPSHOT_FORMAT: Final = 2
_OLDER: Final = {1: lambda pair: stamp(2, {"offset": int(pair[0]), "line": int(pair[1])})}


class _FilePartition(StatefulSourcePartition[Item, State]):
    def __init__(self, path: Path, key: str, n_parts: int, batch_size: int,
                 resume: State | None, step: str = "input") -> None:
        state = check(step, resume, SNAPSHOT_FORMAT, _OLDER) if resume is not None else None
        try:
            self._f = path.open("rb")
        except OSError as exc:
            raise SourceError(f"input file {path}: {exc.strerror}") from None
        self._key = key
        self._source = str(path)
        self._n_parts = n_parts
        self._batch = batch_size
        self._offset: int = state["offset"] if state else 0
        self._line: int = state["line"] if state else 1
        self._f.seek(self._offset)
        self._done = False

    def next_batch(self) -> list[Item]:
        if self._done:
            raise StopIteration
        readline = self._f.readline
        records: list[tuple[int, bytes]] = []
        line_no = self._line
        final = False
        for _ in range(self._batch):
            line = readline()
            if not line:
                final = True
                break
            if line[-1:] == b"\n":
                line = line[:-2] if line[-2:] == b"\r\n" else line[:-1]
            records.append((line_no, line))
            line_no += 1
        else:
            # Peek so the chunk that reaches the end says so, without an extra empty batch.
            here = self._f.tell()
            if not self._f.read(1):
                final = True
            self._f.seek(here)
        self._line = line_no
        self._offset = self._f.tell()
        self._done = final
        return [(self._key, RawChunk(self._key, self._n_parts, self._source, -1, records,
                                     None, final))]

    def snapshot(self) -> State:
        return stamp(SNAPSHOT_FORMAT, {"offset": self._offset, "line": self._line})

    def close(self) -> None:
        self._f.close()


class JsonlSource(FixedPartitionedSource[Item, State]):
    """Replay JSONL files of Segment-spec events; one partition per file."""

    def __init__(self, paths: list[Path] | list[str], batch_size: int = 2000) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise SourceError("no input files given")
        for p in self.paths:
            if not p.is_file():
                raise SourceError(f"input file {p}: not found (or not a regular file)")
        self.batch_size = batch_size
        self._keys: dict[str, Path] = {}
        for p in self.paths:
            other = self._keys.setdefault(self.key(p), p)
            if other != p:  # the partition key is the file name (stored in recovery state)
                raise SourceError(f"input files {other} and {p} have the same name: give "
                                  "each partition file a name of its own")

    @staticmethod
    def key(path: Path) -> str:
        return f"file:{path.name}"

    def list_parts(self) -> list[str]:
        return list(self._keys)

    def build_part(self, step_id: str, for_part: str, resume_state: State | None) -> _FilePartition:
        path = self._keys.get(for_part)
        if path is None:
            raise SourceError(f"step {step_id}: resume state names input {for_part!r}, "
                              "which is not among the files given now")
        return _FilePartition(path, for_part, len(self._keys), self.batch_size, resume_state,
                              step_id)
