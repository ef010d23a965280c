"""Which dead letters `nudge deadletters replay` has already handled (RocksDB via rocksdict),
so that no dead letter is ever re-fed twice. The RocksDB boundary module for this store,
like nudge/delivery/ledger.py for the email ledger.

Keys are the dead letter's origin: where the record was read (Kafka topic, partition,
offset, or file name and line) plus a digest of its bytes (see `letter_key`). A value says
what happened and where the record went; it is for audit and for the summary, never for
deciding anything but "seen".

Runs that write replay files commit in two steps (nudge/app/deadletters.py): the files are
written as `*.partial`, then one atomic write batch records every handled dead letter
together with a run entry that lists the files, then the files are renamed into place and
the run entry is removed. A crash before the batch leaves unrecorded partial files (their
dead letters are re-fed by the next run); a crash after it leaves a run entry, and the next
run finishes the renames (`pending_runs`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from rocksdict import AccessType, Rdict, WriteBatch, WriteOptions

from nudge.core.errors import ReplayStoreError
from nudge.core.events import Position

SEP = "\x1f"
_LETTER = b"dl" + SEP.encode()
_RUN = b"run" + SEP.encode()


def letter_key(position: Position, raw: bytes) -> str:
    """The identity of a dead letter's record: its origin and a digest of its bytes.

    A file is named by its base name, not the path it was given as, so the same input read
    from another directory (or with a relative path from another working directory) is
    recognised. The digest keeps a recreated Kafka topic (offsets start again at 0), or a
    new file with an old name, from hiding a different record at the same position.
    """
    source = Path(position.source).name if position.partition < 0 else position.source
    digest = hashlib.blake2b(raw, digest_size=10).hexdigest()
    return f"{source}{SEP}{position.partition}{SEP}{position.offset}{SEP}{digest}"


class ReplayStore:
    """Handled dead letters by `letter_key`. `read_only` (dry runs) never creates or locks
    the store; a missing store then reads as empty."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._db: Rdict | None = None
        try:
            if read_only:
                # Opening read-only creates the directory when it is missing: check first.
                if (self.path / "CURRENT").exists():
                    self._db = Rdict(str(self.path), access_type=AccessType.read_only())
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self._db = Rdict(str(self.path))
        except Exception as exc:  # rocksdict raises plain Exception (e.g. the lock is held)
            raise ReplayStoreError(
                f"dead-letter replay store {self.path} (config dead_letter_replay.state_dir): "
                f"cannot open: {exc}") from None

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        raw = self._db.get(_LETTER + key.encode())
        return None if raw is None else orjson.loads(raw)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def commit(self, handled: dict[str, dict[str, Any]],
               run: tuple[str, dict[str, Any]] | None = None) -> None:
        """Record handled dead letters, and optionally a run entry, in one atomic batch."""
        if self._db is None:
            raise ReplayStoreError(f"dead-letter replay store {self.path}: opened read-only")
        batch = WriteBatch()
        for key, value in handled.items():
            batch.put(_LETTER + key.encode(), orjson.dumps(value))
        if run is not None:
            batch.put(_RUN + run[0].encode(), orjson.dumps(run[1]))
        opts = WriteOptions()
        opts.sync = True  # a commit is rare and must survive a power cut, not just a crash
        try:
            self._db.write(batch, opts)
        except Exception as exc:
            raise ReplayStoreError(f"dead-letter replay store {self.path}: cannot write: "
                                   f"{exc}") from None

    def pending_runs(self) -> list[tuple[str, dict[str, Any]]]:
        """Run entries whose files may not all be renamed into place yet."""
        if self._db is None:
            return []
        out = []
        for k, v in self._db.items(from_key=_RUN):
            if not (isinstance(k, bytes) and k.startswith(_RUN)):
                break  # keys are sorted: past the prefix, no more runs
            out.append((k[len(_RUN):].decode(), orjson.loads(v)))
        return out

    def finish_run(self, run_id: str) -> None:
        if self._db is not None:
            del self._db[_RUN + run_id.encode()]

    def count(self) -> int:
        if self._db is None:
            return 0
        n = 0
        for k in self._db.keys(from_key=_LETTER):
            if not (isinstance(k, bytes) and k.startswith(_LETTER)):
                break
            n += 1
        return n

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
