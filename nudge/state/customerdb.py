"""One shard's customer records on disk (RocksDB via rocksdict): where the customer store
(nudge/state/store.py) keeps them when recovery is on. The RocksDB boundary module of the
customer store, as nudge/state/profiles.py is the profile view's.

A shard's database, `<recovery.dir>/customers/shard-<n>`, is written once per epoch: one atomic
write batch with the records that changed, an undo record (each changed customer's previous
bytes, or none) and the new position, a count of commits. The Bytewax snapshot of the shard
carries only that position, so a snapshot costs what the epoch changed. Bytewax may resume
from an earlier snapshot than the database reached (the epochs after it were not committed
everywhere): `rollback` undoes the commits after the snapshot's position, newest first, in
one batch. Undo records are kept for the last `history` positions (config
`recovery.store_history`); a position older than that, or one the database never reached,
is refused with a StoreError naming the shard.

Erasure: a deleted record's bytes stay in the undo records of the commits before it, and in
RocksDB's files until a compaction rewrites them. When the undo record of a commit that erased
someone expires (`history` commits later), the database drops it and compacts everything,
bottom level included, so the erased bytes leave the files.

Keys: b"c" + customer id (the record, as nudge/state/customer.py encodes it), b"p" (the
position, 8 bytes big-endian), b"u" + position (undo: a pickle of [(customer id, previous
bytes or None)], written and read by this module only), b"x" + position (that commit erased
someone).
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path
from typing import Any

from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from nudge.core.errors import StoreError
from nudge.state import rocks

_CUSTOMER = b"c"
_POSITION = b"p"
_UNDO = b"u"
_ERASED = b"x"
# Shared by every shard's database in the process, so memory stays bounded however many
# shards a worker holds: the memtables (flushed to files past this) and the block cache.
MEMTABLES_BYTES = 64 << 20
CACHE_BYTES = 32 << 20
_shared: dict[str, Any] = {}
# Databases open in this process by path: a run started again in the same process (tests,
# `nudge replay` after `nudge run`) reopens what an earlier run's shard still holds.
_open: dict[str, CustomerDB] = {}


def _pos(position: int) -> bytes:
    return position.to_bytes(8, "big")


def _options() -> Options:
    if not _shared:
        _shared["cache"] = Cache(CACHE_BYTES)
        _shared["memtables"] = WriteBufferManager(MEMTABLES_BYTES, False)
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_write_buffer_manager(_shared["memtables"])
    opts.set_write_buffer_size(8 << 20)
    opts.set_max_write_buffer_number(2)
    opts.set_keep_log_file_num(2)
    opts.set_max_open_files(256)
    table = BlockBasedOptions()
    table.set_block_cache(_shared["cache"])
    table.set_bloom_filter(10, False)  # most reads of a new customer find nothing
    opts.set_block_based_table_factory(table)
    return opts


class CustomerDB:
    """One shard's records on disk, at a position; see the module docstring."""

    def __init__(self, path: str | Path, shard: int, history: int) -> None:
        self.path = Path(path)
        self.shard = shard
        self.history = history
        key = str(self.path.resolve())
        earlier = _open.pop(key, None)
        if earlier is not None:
            earlier.close()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(self.path), _options())
            sync = WriteOptions()
            sync.sync = True  # the epoch's commit outlives a machine crash, as Bytewax's
            self._db.set_write_options(sync)
            raw = self._db.get(_POSITION)
        except Exception as exc:  # rocksdict raises plain Exception (lock held, corrupt)
            raise StoreError(f"{self._what()}: cannot open: {exc}") from None
        self.position = int.from_bytes(raw, "big") if raw else 0
        _open[key] = self

    def _what(self) -> str:
        return f"the customer store of shard {self.shard} ({self.path}, under recovery.dir)"

    def get(self, customer_id: str, /) -> bytes | None:
        return self._db.get(_CUSTOMER + customer_id.encode())

    def write(self, changes: list[tuple[str, bytes | None, bytes | None]]) -> None:
        """Commit (customer id, new bytes or None to delete, previous bytes or None) as the
        next position, with its undo record; drop the undo record `history` positions back."""
        position = self.position + 1
        batch = WriteBatch(raw_mode=True)
        erased = False
        for cid, data, _prev in changes:
            if data is None:
                batch.delete(_CUSTOMER + cid.encode())
                erased = True
            else:
                batch.put(_CUSTOMER + cid.encode(), data)
        batch.put(_UNDO + _pos(position),
                  pickle.dumps([(cid, prev) for cid, _data, prev in changes], protocol=5))
        if erased:
            batch.put(_ERASED + _pos(position), b"")
        batch.put(_POSITION, _pos(position))
        expired = position - self.history
        purge = False
        if expired > 0:
            batch.delete(_UNDO + _pos(expired))
            if self._db.get(_ERASED + _pos(expired)) is not None:
                batch.delete(_ERASED + _pos(expired))
                purge = True
        try:
            self._db.write(batch)
            if purge:  # an erasure can no longer be undone: its bytes leave the files now
                self._db.compact_range(None, None, rocks.purge())
        except Exception as exc:
            raise StoreError(f"{self._what()}: cannot write: {exc}") from None
        self.position = position

    def rollback(self, position: int) -> None:
        """Undo the commits after `position`, newest first, in one batch; StoreError if the
        database never reached it or no longer keeps the undo records back to it."""
        if position == self.position:
            return
        if position > self.position:
            raise StoreError(
                f"{self._what()} is at position {self.position}, behind its recovery "
                f"snapshot's {position}: the store lost commits (restored from an older copy, "
                "or written elsewhere); it cannot resume: start with a new recovery.dir")
        batch = WriteBatch(raw_mode=True)
        for p in range(self.position, position, -1):
            raw = self._db.get(_UNDO + _pos(p))
            if raw is None:
                raise StoreError(
                    f"{self._what()} is at position {self.position} and keeps undo records "
                    f"back to {max(self.position - self.history, 0)} only (recovery."
                    f"store_history = {self.history}); the recovery snapshot resumes from "
                    f"{position}: it cannot roll back that far; raise recovery.store_history "
                    "for older snapshots, or start with a new recovery.dir")
            for cid, prev in pickle.loads(raw):  # written by write() above: trusted
                if prev is None:
                    batch.delete(_CUSTOMER + cid.encode())
                else:
                    batch.put(_CUSTOMER + cid.encode(), prev)
            # (an erasure undone here is replayed, and purged when its new undo expires)
            batch.delete(_UNDO + _pos(p))
            batch.delete(_ERASED + _pos(p))
        batch.put(_POSITION, _pos(position))
        try:
            self._db.write(batch)
        except Exception as exc:
            raise StoreError(f"{self._what()}: cannot roll back: {exc}") from None
        self.position = position

    def reset(self, records: dict[str, bytes]) -> None:
        """Hold exactly `records` at position 0, no undo: a shard restored from a snapshot
        that carried its records (a previous format, or recovery without this store)."""
        batch = WriteBatch(raw_mode=True)
        batch.delete_range(b"", b"\xff")
        for cid, data in records.items():
            batch.put(_CUSTOMER + cid.encode(), data)
        batch.put(_POSITION, _pos(0))
        try:
            self._db.write(batch)
            self._db.compact_range(None, None, rocks.purge())
        except Exception as exc:
            raise StoreError(f"{self._what()}: cannot write: {exc}") from None
        self.position = 0

    def state(self) -> dict[str, Any]:
        """What the Bytewax snapshot carries: the position."""
        return {"position": self.position}

    def close(self) -> None:
        key = str(self.path.resolve())
        if _open.get(key) is self:
            del _open[key]
        with contextlib.suppress(Exception):  # closed already (rocksdict's DbClosedError)
            self._db.close()


def shard_path(root: str | Path, shard: int) -> Path:
    return Path(root) / f"shard-{shard:04d}"
