"""The queryable profile view (RocksDB via rocksdict): every customer's last committed record
and each shard's shared state (`__shard__/<n>`: model, engagement ranks), written by the
dataflow's `profiles` sink after each snapshot, read by `nudge inspect` and
`nudge model report`, also while the flow runs (as a RocksDB secondary instance).

The view trails the flow by one epoch and is rewritten, never appended to, so a replay
after a crash leaves it as an uninterrupted run would. Values are the record's own
encoding (nudge/state/customer.py); readers compute features from it (nudge/state/features.py).
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rocksdict import (
    AccessType,
    Rdict,
    WriteBatch,
)

from nudge.core.errors import ProfileError
from nudge.state import rocks

SHARD_PREFIX = "__shard__/"


class ProfileStore:
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self._secondary: str | None = None
        try:
            if read_only:
                if not self.path.is_dir():
                    raise ProfileError(f"profile view {self.path}: not found (is "
                                       "outputs.profiles set, and has the flow run?)")
                # A secondary instance reads while the flow holds the primary's lock.
                self._secondary = tempfile.mkdtemp(prefix="nudge-inspect-")
                self._db = Rdict(str(self.path),
                                 access_type=AccessType.secondary(self._secondary))
                self._db.try_catch_up_with_primary()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = Rdict(str(self.path))
        except ProfileError:
            raise
        except Exception as exc:  # rocksdict raises plain Exception (lock held, corrupt)
            raise ProfileError(f"profile view {self.path} (config outputs.profiles): "
                               f"cannot open: {exc}") from None

    def write(self, items: list[tuple[str, bytes]]) -> None:
        batch = WriteBatch()
        erased = False
        for key, value in items:
            if value:
                batch.put(key.encode(), value)
            else:  # an erased customer (nudge/state/store.py)
                batch.delete(key.encode())
                erased = True
        try:
            self._db.write(batch)
            if erased:  # rare: the erased bytes leave the files now, not at some compaction
                self._db.compact_range(None, None, rocks.purge())
        except Exception as exc:
            raise ProfileError(f"profile view {self.path}: cannot write: {exc}") from None

    def erase(self, keys: list[str]) -> int:
        """Delete these customers' records and compact, so that their bytes leave the
        files too (a RocksDB delete is a tombstone until compaction). Returns how many
        were there."""
        found = [k for k in keys if self.get(k) is not None]
        self.write([(k, b"") for k in keys])  # compacts, also when the flow deleted them
        return len(found)

    def customers_with_email(self, address: str) -> list[str]:
        """The ids of the customers whose record has this address (normalised), by a scan
        of the view: for `nudge erase --email`, not for the flow."""
        from nudge.core.address import normalised
        from nudge.state.customer import decode

        wanted = normalised(address)
        found = []
        for key in self._db.keys():  # noqa: SIM118 - Rdict iterates items
            if not isinstance(key, bytes) or key.startswith(SHARD_PREFIX.encode()):
                continue
            raw = self._db.get(key)
            if isinstance(raw, bytes):
                email = decode(raw).email
                if email and normalised(email) == wanted:
                    found.append(key.decode())
        return found

    def get(self, key: str) -> bytes | None:
        value = self._db.get(key.encode())
        return value if isinstance(value, bytes) else None

    def shard_state(self, shard: int) -> dict[str, Any] | None:
        raw = self.get(f"{SHARD_PREFIX}{shard}")
        return None if raw is None else pickle.loads(raw)  # written by our own flow only

    def shard_states(self) -> Iterator[tuple[int, dict[str, Any]]]:
        prefix = SHARD_PREFIX.encode()
        for key in self._db.keys(from_key=prefix):
            if not (isinstance(key, bytes) and key.startswith(prefix)):
                break
            raw = self._db.get(key)
            if isinstance(raw, bytes):
                yield int(key[len(prefix):]), pickle.loads(raw)

    def close(self) -> None:
        self._db.close()
        if self._secondary is not None:
            shutil.rmtree(self._secondary, ignore_errors=True)
