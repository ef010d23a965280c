"""A recovery store written under the earlier plain shard names (`shard-0003`) resumes after
`nudge recovery migrate` (what `nudge run` does before the flow starts) with exactly the
decisions, emails and other outputs of an uninterrupted run; without the migration the
shards start empty and the output differs.

The old store is made from a mid-run crash of today's flow by renaming its shard keys back
to the plain names, each row moved to the recovery partition Bytewax writes the plain name
to: the store the earlier version would have left (a snapshot's content does not depend on
its key's name).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from nudge.app import cli
from nudge.app.migrate import migrate, placed_name, plan
from nudge.core.placement import plain_key
from tests.test_recovery import (  # noqa: F401 - the fixtures
    RECOVERY_TIMES,
    Chaos,
    Data,
    Procs,
    crash_threads,
    data,
    final_threads,
    finish,
    lines,
    procs,
)

SHARDS = 8  # tests.flowtools.write_config's


def _plain_names(step_id: str, key: str) -> str | None:
    """The inverse of the migration: a placed shard name back to the plain one."""
    for kind in ("shard", "links", "identity"):
        for i in range(SHARDS):
            if placed_name(step_id, plain_key(kind, i)) == key:
                return plain_key(kind, i)
    return None


def _keys(rdir: Path) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for path in rdir.glob("*.sqlite3"):
        with sqlite3.connect(path) as db:
            keys |= set(db.execute("SELECT step_id, state_key FROM snaps"))
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("db_parts", [1, 3], ids=lambda n: f"{n}-recovery-parts")
def test_a_store_with_the_plain_names_resumes_after_the_migration(
        data: Data, tmp_path: Path, procs: Procs, db_parts: int) -> None:  # noqa: F811
    chaos = Chaos(data, tmp_path / "chaos", db_parts)
    crash_threads(procs, chaos, 30, workers=1)
    chaos.check_mid_run()
    old = migrate(chaos.db, _plain_names)  # the store the earlier version would have left
    assert {m.step_id for m in old} >= {"nudge.customers", "nudge.links", "nudge.identity"}
    keys = _keys(chaos.db)
    assert ("nudge.customers", "shard-0003") in keys
    assert not any(placed_name(s, k) is None and k.startswith("shard-") for s, k in keys)
    if db_parts > 1:  # some rows had to change partition
        assert any(m.source != m.target for m in old)

    # Without the migration the shards would start empty: the output differs. (The control
    # run writes to the chaos run's outputs, its config's: they are put back after it.)
    saved, control_db = tmp_path / "saved", tmp_path / "control-recovery"
    shutil.copytree(chaos.out, saved)
    shutil.copytree(chaos.db, control_db)
    rc, _ = finish(procs.start(chaos.plain(), "-r", str(control_db), *RECOVERY_TIMES))
    assert rc != 0 or lines(chaos.out / "decisions.jsonl") != data.expected
    shutil.rmtree(chaos.out)
    shutil.copytree(saved, chaos.out)

    assert cli.main(["recovery", "migrate", "--dir", str(chaos.db)]) == 0
    assert plan(chaos.db) == []  # nothing left under a plain name
    assert ("nudge.customers", "shard-0003") not in _keys(chaos.db)
    final_threads(procs, chaos, workers=2)
    chaos.check_final([1, 2])
