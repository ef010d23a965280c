"""Recovery-store migration: state kept under the plain shard names of earlier versions
(`shard-0003`, `links-0001`, `identity-0000`) moves to the placed names of
nudge/core/placement.py (`shard-0003-1236`...), so an upgraded flow resumes every shard.

Bytewax keeps one row per (step id, state key, epoch) in the `snaps` table of its recovery
partitions (SQLite files `part-N.sqlite3`), and reads a key's state from whichever partition
holds it: a renamed row must also move to the partition Bytewax writes the new name to
(`recovery_part_of`), or a later snapshot of the key would sit in a second partition beside
a stale one that Bytewax's clean-up never reaches. Each move inserts in the target
partition before it deletes from the source, so a migration stopped half way is finished by
the next one; a file lock keeps the processes of a cluster sharing one directory from
migrating at once.

`nudge run` migrates before the flow starts (one log line when it renamed anything);
`nudge recovery migrate` does it alone.
"""

from __future__ import annotations

import fcntl
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from nudge.core.errors import NudgeError
from nudge.core.placement import placed_key, recovery_part_of

# Steps whose keys are shard names (flow id "nudge"; tests/test_step_ids.py pins the ids).
_OLD_NAME = re.compile(r"(shard|links|identity)-(\d{4,})")
_STEP_PREFIX = "nudge."
LOCK_NAME = ".nudge-migrate.lock"


@dataclass(frozen=True, slots=True)
class Move:
    step_id: str
    old: str
    new: str
    epoch: int
    source: int  # recovery partition index
    target: int


def placed_name(step_id: str, key: str) -> str | None:
    """The placed name of a plain shard key of a Nudge step, else None (nothing to move)."""
    m = _OLD_NAME.fullmatch(key)
    if m is None or not step_id.startswith(_STEP_PREFIX):
        return None
    return placed_key(m.group(1), int(m.group(2)))


def partitions(rdir: Path) -> tuple[dict[int, Path], int]:
    """The recovery partitions in `rdir` (index -> file) and the store's partition count."""
    files: dict[int, Path] = {}
    counts = set()
    for path in sorted(rdir.glob("*.sqlite3")):
        with closing(sqlite3.connect(path)) as db:
            for index, count in db.execute("SELECT part_index, part_count FROM parts"):
                files[index] = path
                counts.add(count)
    if len(counts) > 1:
        raise NudgeError(f"recovery store {rdir}: partitions disagree on their count {counts}")
    return files, (counts.pop() if counts else 0)


def plan(rdir: Path, rename: Callable[[str, str], str | None] = placed_name) -> list[Move]:
    """Every snapshot row to rename, with the partition it must move to."""
    files, count = partitions(rdir)
    moves = []
    for index, path in sorted(files.items()):
        with closing(sqlite3.connect(path)) as db:
            rows = db.execute("SELECT step_id, state_key, snap_epoch FROM snaps "
                              "ORDER BY step_id, state_key, snap_epoch").fetchall()
        for step_id, key, epoch in rows:
            new = rename(step_id, key)
            if new is not None and new != key:
                moves.append(Move(step_id, key, new, epoch, index,
                                  recovery_part_of(step_id, new, count)))
    missing = sorted({m.target for m in moves} - set(files))
    if missing:
        raise NudgeError(
            f"recovery store {rdir}: renaming shard keys needs recovery partitions {missing}, "
            f"which are not in this directory; gather every partition in one directory and "
            f"run `nudge recovery migrate` there")
    return moves


def apply(rdir: Path, moves: list[Move]) -> None:
    files, _ = partitions(rdir)
    for target in sorted({m.target for m in moves}):
        with closing(sqlite3.connect(files[target])) as dst:
            for source in sorted({m.source for m in moves if m.target == target}):
                batch = [m for m in moves if m.target == target and m.source == source]
                with closing(sqlite3.connect(files[source])) as src:
                    rows = [(m.step_id, m.new, m.epoch, _blob(src, m)) for m in batch]
                with dst:  # one transaction
                    dst.executemany(
                        "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (step_id, state_key, snap_epoch) "
                        "DO UPDATE SET ser_change = excluded.ser_change", rows)
    for source in sorted({m.source for m in moves}):
        with closing(sqlite3.connect(files[source])) as src, src:  # one transaction
            src.executemany(
                "DELETE FROM snaps WHERE step_id = ? AND state_key = ? AND snap_epoch = ?",
                [(m.step_id, m.old, m.epoch) for m in moves if m.source == source])


def _blob(db: sqlite3.Connection, m: Move) -> bytes | None:
    row = db.execute("SELECT ser_change FROM snaps WHERE step_id = ? AND state_key = ? "
                     "AND snap_epoch = ?", (m.step_id, m.old, m.epoch)).fetchone()
    return None if row is None else row[0]


@contextmanager
def _locked(rdir: Path) -> Iterator[None]:
    with (rdir / LOCK_NAME).open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def migrate(rdir: Path, rename: Callable[[str, str], str | None] = placed_name) -> list[Move]:
    """Rename (and move) every snapshot row `rename` maps to a new key; the moves made."""
    with _locked(rdir):
        moves = plan(rdir, rename)
        if moves:
            apply(rdir, moves)
    return moves


def summary(rdir: Path, moves: list[Move]) -> str:
    keys = {(m.step_id, m.old) for m in moves}
    steps = sorted({m.step_id for m in moves})
    return (f"recovery store {rdir}: renamed {len(keys)} state keys of {', '.join(steps)} to "
            f"the placed shard names ({len(moves)} snapshots)")
