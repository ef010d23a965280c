"""The customer store on disk (nudge/state/customerdb.py): one RocksDB database per shard under
recovery.dir, written once per epoch, the snapshot carrying its position. A resume from an
earlier snapshot than the store reached rolls the store back and decides as an uninterrupted
run; a position the store can no longer reach is refused by name; an erased customer's bytes
leave the files; idle customers leave memory."""

from __future__ import annotations

import pickle
import random
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from nudge.core.config import Config
from nudge.core.errors import ConfigError, NudgeError, StoreError
from nudge.flows.customers import CustomersLogic
from nudge.state.customerdb import CustomerDB, shard_path
from nudge.state.program import compile_program
from nudge.state.shard import Shard
from nudge.state.store import CustomerStore
from tests.events import identify, track
from tests.harness import Pipeline
from tests.test_determinism import shoppers, split

STATEFUL = {"parse": "_parse", "customers": "_customers", "address_logics": "_addresses",
            "decide": "_decide", "link_logics": "_links", "identity_logics": "_identity",
            "catalog_parse": "_catalog_parse"}


def on_disk(config: Config, root: Path, history: int = 16) -> Pipeline:
    p = Pipeline(config, n_parts=2)
    p._customers = partial(CustomersLogic, p.program, False, disk=(str(root), history))
    return p


def snapshot(p: Pipeline) -> dict[str, Any]:
    """Every stateful step's snapshot, pickled as Bytewax stores them, and the input
    position: the end of an epoch."""
    steps = {name: {key: pickle.dumps(logic.snapshot()) for key, logic in
                    getattr(p, name).items()} for name in STATEFUL}
    return {"steps": steps, "lines": list(p.lines)}


def resume(p: Pipeline, snap: dict[str, Any]) -> Pipeline:
    for name, builder in STATEFUL.items():
        logics = getattr(p, name)
        for key, raw in snap["steps"][name].items():
            logics[key] = getattr(p, builder)(pickle.loads(raw))
    p.lines = list(snap["lines"])
    return p


def workload() -> list[list[bytes]]:
    records = shoppers(5, customers=40, steps=900, gap=3.0)
    # erasures of some shoppers, and their return under the same id
    t = 900 * 3.0
    records += [(f"u{i}", track("Erasure Requested", f"u{i}", t + i)) for i in range(0, 40, 7)]
    records += [(f"u{i}", identify(f"u{i}", t + 60 + i, email=f"u{i}@example.com"))
                for i in range(0, 40, 14)]
    return split(records, 2)


def feed(p: Pipeline, parts: list[list[bytes]], start: int, stop: int, batch: int = 25) -> None:
    for lo in range(start, stop, batch):
        for i, part in enumerate(parts):
            if lo < len(part):
                p.feed(part[lo:min(lo + batch, stop)], part=i)


def test_a_resume_from_an_earlier_snapshot_rolls_the_store_back_and_decides_the_same(
        tmp_path: Path) -> None:
    config = Config(shards=4)
    parts = workload()
    n = max(map(len, parts))
    reference = Pipeline(config, n_parts=2)
    feed(reference, parts, 0, n)
    reference.end()
    assert len(reference.decisions) > 20

    root = tmp_path / "customers"
    first = on_disk(config, root)
    feed(first, parts, 0, n // 3)
    snap = snapshot(first)
    before = len(first.decisions)
    # the run goes on past the snapshot: its store commits epochs Bytewax never commits
    feed(first, parts, n // 3, 2 * n // 3)
    snapshot(first)
    feed(first, parts, 2 * n // 3, n)
    snapshot(first)
    ahead = {s.shard: s.store.records.state()["position"] for s in first.shards}

    # killed; resumed from the earlier snapshot, the input from its position
    second = resume(on_disk(config, root), snap)
    for key, logic in second.customers.items():
        position = logic.shard.store.records.state()["position"]
        assert position < ahead[logic.shard.shard], key  # rolled back
    feed(second, parts, n // 3, n)
    second.end()
    assert first.decisions[:before] + second.decisions == reference.decisions


def test_a_store_that_ran_ahead_is_rolled_back_to_the_snapshot(tmp_path: Path) -> None:
    path = shard_path(tmp_path, 3)
    store = CustomerStore(CustomerDB(path, 3, history=4))
    store.get_or_create("a").email = "a1@example.com"
    store.get_or_create("gone").email = "gone@example.com"
    store.commit()
    at = store.state()
    assert at["position"] == 1 and at["count"] == 2
    store.get("a").email = "a2@example.com"  # type: ignore[union-attr]
    store.get_or_create("b").email = "b@example.com"
    store.commit()
    store.erase("gone")
    store.commit()
    store.peek("a")
    store.get("b")  # touched, not changed: no commit
    store.commit()
    assert store.state()["position"] == 3 and store.state()["count"] == 2

    # a new process resumes from position 1
    db = CustomerDB(path, 3, history=4)
    assert db.position == 3
    db.rollback(at["position"])
    back = CustomerStore(db, at["count"])
    assert back.peek("a").email == "a1@example.com"  # type: ignore[union-attr]
    assert back.peek("gone").email == "gone@example.com"  # type: ignore[union-attr]
    assert "b" not in back and back.peek("b") is None
    # and goes on from there: the next commit is position 2 again
    back.get_or_create("c").email = "c@example.com"
    back.commit()
    assert CustomerDB(path, 3, history=4).position == 2


def test_a_position_the_store_cannot_reach_is_refused_naming_the_shard(tmp_path: Path) -> None:
    path = shard_path(tmp_path, 5)
    store = CustomerStore(CustomerDB(path, 5, history=2))
    for i in range(5):
        store.get_or_create(f"c{i}").email = f"c{i}@example.com"
        store.commit()
    db = CustomerDB(path, 5, history=2)
    with pytest.raises(StoreError) as older:
        db.rollback(1)  # undo kept for positions 4 and 5 only
    assert "shard 5" in str(older.value) and "recovery.store_history" in str(older.value)
    with pytest.raises(StoreError) as ahead:
        db.rollback(9)  # a snapshot of a position the store never reached
    assert "shard 5" in str(ahead.value) and "behind" in str(ahead.value)
    db.rollback(3)  # within reach
    assert CustomerStore(db, 3).peek("c3") is None


def test_a_restore_refused_by_the_store_stops_the_shard_with_its_number(tmp_path: Path) -> None:
    program = compile_program(Config(shards=8))
    disk = (str(tmp_path), 2)
    shard = Shard(6, program, disk=disk)
    snaps = []
    for i in range(4):
        shard.store.get_or_create(f"c{i}").email = f"c{i}@example.com"
        snaps.append(pickle.dumps(shard.snapshot()))
    with pytest.raises(NudgeError) as err:  # position 1; undo kept back to 2
        Shard(-1, program, pickle.loads(snaps[0]), disk=disk)
    assert "shard 6" in str(err.value)
    # a fresh start (no snapshot) of a store that committed 4 positions: 0 is out of reach
    with pytest.raises(StoreError, match="shard 6"):
        Shard(6, program, None, disk=disk)


def test_an_erased_customer_leaves_the_store_files(tmp_path: Path) -> None:
    secret = b"erin.private@example.com"
    path = shard_path(tmp_path, 0)
    store = CustomerStore(CustomerDB(path, 0, history=2))
    store.get_or_create("erin").email = secret.decode()
    store.get_or_create("bob").email = "bob@example.com"
    store.commit()
    store.get("erin").first_name = "Erin"  # type: ignore[union-attr]
    store.commit()
    assert store.erase("erin") and "erin" not in store
    store.commit()
    assert store.peek("erin") is None
    assert store.records.get("erin") is None  # gone from the records at once
    # its earlier bytes stay undoable for `history` commits of the shard, then leave the files
    for i in range(2):
        store.get_or_create(f"other{i}").email = f"o{i}@example.com"
        store.commit()
    found = [p.name for p in path.iterdir() if p.is_file() and secret in p.read_bytes()]
    assert found == []


def test_snapshots_carry_the_position_not_the_records(tmp_path: Path) -> None:
    program = compile_program(Config(shards=4))
    shard = Shard(1, program, disk=(str(tmp_path), 8))
    for i in range(200):
        shard.store.get_or_create(f"c{i}").email = f"c{i}@example.com"
    snap = shard.snapshot()
    assert snap["store"] == {"count": 200, "position": 1}
    assert b"c7@example.com" not in pickle.dumps(snap)
    again = Shard(-1, program, pickle.loads(pickle.dumps(snap)), disk=(str(tmp_path), 8))
    assert again.customer("c7").email == "c7@example.com"
    assert len(again.store) == 200


def test_a_snapshot_of_the_previous_format_is_migrated_into_the_store(tmp_path: Path) -> None:
    program = compile_program(Config(shards=4))
    memory = Shard(2, program)
    memory.store.get_or_create("ann").email = "ann@example.com"
    snap = memory.snapshot()
    old = dict(snap, format=6, store=dict(snap["store"]["records"]))  # records inline
    for disk in (None, (str(tmp_path), 8)):
        shard = Shard(-1, program, pickle.loads(pickle.dumps(old)), disk=disk)
        assert shard.customer("ann").email == "ann@example.com"
        assert len(shard.store) == 1
        assert shard.snapshot()["format"] == 7
    # a snapshot whose customers are on disk cannot resume without recovery.dir
    on_disk = Shard(2, program, disk=(str(tmp_path / "b"), 8))
    on_disk.store.get_or_create("ann")
    with pytest.raises(ConfigError, match=r"recovery\.dir"):
        Shard(-1, program, on_disk.snapshot())


def test_idle_customers_leave_memory_and_come_back_from_disk(tmp_path: Path) -> None:
    store = CustomerStore(CustomerDB(shard_path(tmp_path, 0), 0, history=4), keep_epochs=2)
    rng = random.Random(1)
    for epoch in range(10):
        for i in range(100):
            store.get_or_create(f"e{epoch}-{i}").email = f"{rng.random()}@example.com"
        store.commit()
    # the last `keep_epochs` epochs' customers decoded, none of the others in any dict
    assert len(store.hot) == len(store.base) == 200
    assert len(store) == 1000
    assert store.peek("e0-5") is not None and "e0-5" in store.hot
