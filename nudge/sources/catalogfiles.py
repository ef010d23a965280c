"""Catalog feed files as a bounded source (`catalog.files`): one partition per file.

`.jsonl` files hold one JSON object a line; `.csv` and `.tsv` files are Google Merchant
style feeds with a header row (id, title, price, sale_price, availability, link,
image_link, product_type, brand, and optionally updated_at), each row read as the JSON
object of its columns (nudge/scoring/catalogfeed.py parses both the same way). Chunks are
RawChunks like the event files', so a row's position is its line (JSONL) or row number
(CSV, the header being row 1); the resume state is the next position.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from nudge.core.errors import SourceError
from nudge.core.events import RawChunk
from nudge.core.snapshot import check, stamp

Item = tuple[str, RawChunk]
State = dict[str, Any]  # {"format": 2, "next": the first position not yet handed out}
SNAPSHOT_FORMAT: Final = 2
_OLDER: Final = {1: lambda position: stamp(2, {"next": int(position)})}  # the bare position
MAX_FIELD = 1 << 20  # csv's own limit is 128 KiB; a longer field is dead-lettered, not fatal


def read_records(path: Path) -> Iterator[tuple[int, bytes]]:
    """(position, record bytes) of every record in a catalog file."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        csv.field_size_limit(MAX_FIELD)
        with path.open("r", encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if reader.fieldnames is None:
                return
            fields = [name.strip().lower() for name in reader.fieldnames]
            reader.fieldnames = fields
            for n, row in enumerate(reader, start=2):
                yield n, orjson.dumps({k: v for k, v in row.items() if k is not None})
        return
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            record = raw.rstrip(b"\r\n")
            if record.strip():
                yield n, record


class _CatalogFilePartition(StatefulSourcePartition[Item, State]):
    def __init__(self, path: Path, key: str, n_parts: int, batch_size: int,
                 resume: State | None, step: str = "catalog_input") -> None:
        state = check(step, resume, SNAPSHOT_FORMAT, _OLDER) if resume is not None else None
        self._key = key
        self._source = str(path)
        self._n_parts = n_parts
        self._batch = batch_size
        self._next: int = state["next"] if state else 0  # the first position not handed out
        try:
            self._records = read_records(path)
        except OSError as exc:
            raise SourceError(f"catalog file {path}: {exc.strerror}") from None
        self._done = False

    def next_batch(self) -> list[Item]:
        if self._done:
            raise StopIteration
        records: list[tuple[int, bytes]] = []
        final = True
        try:
            for pos, raw in self._records:
                if pos < self._next:
                    continue  # resumed: already handed out before the snapshot
                records.append((pos, raw))
                self._next = pos + 1
                if len(records) >= self._batch:
                    final = False
                    break
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"catalog file {self._source}: {exc}") from None
        self._done = final
        return [(self._key, RawChunk(self._key, self._n_parts, self._source, -1, records,
                                     None, final))]

    def snapshot(self) -> State:
        return stamp(SNAPSHOT_FORMAT, {"next": self._next})

    def close(self) -> None:
        close = getattr(self._records, "close", None)
        if close is not None:
            close()


class CatalogFileSource(FixedPartitionedSource[Item, State]):
    """Catalog files (JSONL, CSV, TSV), read once to their end."""

    def __init__(self, paths: list[Path] | list[str], batch_size: int = 10_000) -> None:
        self.paths = [Path(p) for p in paths]
        for p in self.paths:
            if not p.is_file():
                raise SourceError(f"catalog file {p}: not found (or not a regular file); "
                                  "check catalog.files")
        self.batch_size = batch_size
        self._keys: dict[str, Path] = {}
        for p in self.paths:
            other = self._keys.setdefault(f"catalog:{p.name}", p)
            if other != p:
                raise SourceError(f"catalog files {other} and {p} have the same name: give "
                                  "each a name of its own")

    def list_parts(self) -> list[str]:
        return list(self._keys)

    def build_part(self, step_id: str, for_part: str,
                   resume_state: State | None) -> _CatalogFilePartition:
        path = self._keys.get(for_part)
        if path is None:
            raise SourceError(f"step {step_id}: resume state names catalog file {for_part!r}, "
                              "which is not among catalog.files now")
        return _CatalogFilePartition(path, for_part, len(self._keys), self.batch_size,
                                     resume_state, step_id)


def csv_text(rows: list[dict[str, object]], columns: list[str]) -> str:
    """A CSV feed of `rows` with `columns` (the demo's catalog and the tests write these)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
