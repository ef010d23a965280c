"""Key placement (nudge/core/placement.py) against a real Bytewax 0.21.1 run: the worker a
state key lands on, the recovery partition its snapshot is written to, and the placed shard
names spreading evenly where the plain ones fell 13 to 3."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, cluster_main

from nudge.core.ids import identity_key, links_key, shard_key
from nudge.core.placement import (
    _TABLES,
    KINDS,
    RESIDUES,
    placed_key,
    plain_key,
    recovery_part_of,
    search_suffix,
    worker_of,
)

PROBE_KEYS = ([shard_key(i) for i in range(16)] + [plain_key("shard", i) for i in range(16)]
              + [links_key(0), identity_key(1), "decide", "x" * 41, "é-ü", ""])


def _probe(tmp_path: Path, workers: int, parts: int) -> tuple[list[set[str]], Path]:
    """Runs a stateful step over PROBE_KEYS on `workers` worker threads with recovery:
    the keys each worker thread held, and the recovery directory."""
    seen: list[tuple[str, int]] = []
    flow = Dataflow("probe")
    keyed = op.input("inp", flow, TestingSource([(k, 1) for k in PROBE_KEYS]))
    held = op.stateful_map("where", keyed,
                           lambda s, v: ((s or 0) + v, threading.get_ident()))
    op.output("out", held, TestingSink(seen))
    init_db_dir(tmp_path, parts)
    cluster_main(flow, [], 0, worker_count_per_proc=workers, epoch_interval=timedelta(0),
                 recovery_config=RecoveryConfig(str(tmp_path)))
    groups: dict[int, set[str]] = {}
    for key, thread in seen:
        groups.setdefault(thread, set()).add(key)
    assert sorted(k for k, _ in seen) == sorted(PROBE_KEYS)
    return list(groups.values()), tmp_path


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_worker_of_is_where_bytewax_puts_a_key(tmp_path: Path, workers: int) -> None:
    groups, _ = _probe(tmp_path, workers, 1)
    expected: dict[int, set[str]] = {}
    for key in PROBE_KEYS:
        expected.setdefault(worker_of(key, workers), set()).add(key)
    assert sorted(map(sorted, groups)) == sorted(map(sorted, expected.values()))


def test_recovery_part_of_is_where_bytewax_writes_a_snapshot(tmp_path: Path) -> None:
    parts = 3
    _, rdir = _probe(tmp_path, 2, parts)
    found: set[str] = set()
    for path in rdir.glob("*.sqlite3"):
        with sqlite3.connect(path) as db:
            (index,) = db.execute("SELECT part_index FROM parts").fetchone()
            for step_id, key in db.execute("SELECT DISTINCT step_id, state_key FROM snaps"):
                assert recovery_part_of(step_id, key, parts) == index, (step_id, key)
                found.add(key)
    assert set(PROBE_KEYS) <= found  # and the source's partition


def test_plain_shard_names_fell_unevenly_and_placed_ones_spread() -> None:
    plain = Counter(worker_of(plain_key("shard", i), 2) for i in range(16))
    assert sorted(plain.values()) == [3, 13]  # what the earlier names did
    for workers in (1, 2, 3, 4, 5, 6, 8, 16):
        for count in (16, 64, 100):
            placed = Counter(worker_of(shard_key(i), workers) for i in range(count))
            assert max(placed.values()) - min(placed.values()) <= 1, (workers, count)
            assert all(worker_of(shard_key(i), workers) == i % workers for i in range(count))


def test_the_kept_table_is_the_search_rule() -> None:
    for kind, count in KINDS.items():
        assert len(_TABLES[kind]) == count
        for i in range(count):
            key = placed_key(kind, i)
            assert key.startswith(plain_key(kind, i) + "-")
            assert worker_of(key, RESIDUES) == i % RESIDUES, key
    for kind in KINDS:  # the least suffix, as the generator finds it (a few: it is slow)
        for i in (0, 1):
            assert _TABLES[kind][i] == search_suffix(kind, i)


def test_an_index_beyond_the_table_is_searched() -> None:
    i = KINDS["links"] + 3
    key = placed_key("links", i)
    assert worker_of(key, RESIDUES) == i and key == placed_key("links", i)
