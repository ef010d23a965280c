"""The email ledger (RocksDB via rocksdict): which (customer, trigger, episode, stage) were
delivered or dead-lettered. One of the three RocksDB boundary modules, with the profile view
(nudge/state/profiles.py) and the dead-letter replay store (nudge/state/replayed.py).

A key is recorded only after the transport accepted the send (or after its final failure),
so a crash between the two can repeat a send but never lose one; a re-emitted decision
after a resume, or a rerun over the same input, finds its key and sends nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from rocksdict import Rdict

from nudge.core.errors import LedgerError
from nudge.state import rocks

SEP = "\x1f"


class Ledger:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(self.path))
        except Exception as exc:  # rocksdict raises plain Exception (e.g. the lock is held)
            raise LedgerError(f"ledger {self.path} (config delivery.ledger_dir): cannot "
                              f"open: {exc}") from None

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._db.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def __contains__(self, key: str) -> bool:
        return self._db.get(key.encode()) is not None

    def record(self, key: str, *, outcome: str, transport: str, receipt: str,
               attempts: int) -> None:
        value = orjson.dumps({"outcome": outcome, "transport": transport, "receipt": receipt,
                              "attempts": attempts,
                              # audit only: when the transport accepted it (never decides)
                              "recorded_at": int(time.time() * 1000)})
        try:
            self._db[key.encode()] = value
        except Exception as exc:
            raise LedgerError(f"ledger {self.path}: cannot write: {exc}") from None

    def keys_of(self, customer_id: str) -> list[str]:
        """The keys (customer, trigger, episode, stage) of one customer's emails."""
        prefix = (customer_id + SEP).encode()
        found = []
        for k in self._db.keys(from_key=prefix):
            if not (isinstance(k, bytes) and k.startswith(prefix)):
                break  # keys are sorted: past the prefix, nothing more of this customer
            found.append(k.decode())
        return found

    def erase_customer(self, customer_id: str) -> int:
        """Delete one customer's entries (an erasure, nudge/app/erase.py) and compact, so
        that their bytes leave the files too."""
        doomed = self.keys_of(customer_id)
        for k in doomed:
            del self._db[k.encode()]
        if doomed:
            self._db.compact_range(None, None, rocks.purge())
        return len(doomed)

    def count(self) -> int:
        return sum(1 for _ in self._db.keys())  # noqa: SIM118 - Rdict iterates items

    def close(self) -> None:
        self._db.close()
