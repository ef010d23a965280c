"""Erasure (issue 13, section 6): an `Erasure Requested` event and `nudge erase` remove a
customer's record, profile view entry, ledger details, pending stages and emails; what stays
is a digest of the address on the suppression list, so the address is not mailed again."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import run_main

from nudge.app.erase import erase
from nudge.core import config as config_mod
from nudge.core.config import Config
from nudge.core.events import Kind
from nudge.delivery.ledger import Ledger
from nudge.flows.dataflow import build_flow
from nudge.flows.parse import parse_record
from nudge.sources.files import JsonlSource
from nudge.state.profiles import ProfileStore
from tests.events import add, identify, product, track
from tests.flowtools import write_config
from tests.harness import Pipeline
from tests.test_parse import LIMITS

SECRET = [b"erin-77", b"erin.private@example.com", b"Erinprivate"]


def erin_and_others(erase_at: float) -> list[bytes]:
    return [
        identify("erin-77", 0, email="erin.private@example.com", first_name="Erinprivate"),
        add("erin-77", 1),              # stage 1 due at 61: sent
        add("erin-77", 200),            # stage due at 260: pending when she is erased
        identify("bob", 0, email="bob@example.com", first_name="Bob"),
        add("bob", 2),
        track("Erasure Requested", "erin-77", erase_at),
        track("Product Viewed", "zz", 400, product("sku-2")),  # event time moves on
    ]


def test_an_erased_customer_leaves_nothing_in_the_shards_and_the_address_stays_suppressed(
) -> None:
    p = Pipeline(Config(shards=4))
    p.feed([*erin_and_others(erase_at=230)[:-1],
            identify("mallory", 300, email="Erin.Private@example.com"), add("mallory", 301),
            track("Product Viewed", "zz", 400, product("sku-2"))])
    p.end()
    log = [(d.customer_id, d.outcome, d.reason) for d in p.decisions]
    # her first stage went out before the erasure; the pending one never comes
    assert log == [("erin-77", "sent", None), ("bob", "sent", None),
                   ("mallory", "suppressed", "address_suppressed")]
    for shard in p.shards:
        assert shard.customer("erin-77") is None
        snap = pickle.dumps(shard.snapshot())
        assert not any(s in snap for s in SECRET)
    for a in p.addresses:
        snap = pickle.dumps(a.snapshot())
        assert not any(s in snap for s in SECRET)


def test_erasure_of_an_address_without_a_known_customer_suppresses_it() -> None:
    p = Pipeline(Config(shards=4))
    p.feed([track("Erasure Requested", "erasure-x", 0, {"email": "gone@example.com"}),
            identify("new", 1, email="gone@example.com"), add("new", 2),
            track("Product Viewed", "zz", 400, product("sku-2"))])
    p.end()
    assert [(d.customer_id, d.reason) for d in p.decisions] == [("new", "address_suppressed")]
    assert all(s.customer("erasure-x") is None for s in p.shards)


def _files_mentioning(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name != "input.jsonl":
            data = path.read_bytes()
            found += [f"{path.relative_to(root)}: {n.decode()}" for n in needles if n in data]
    return found


def test_after_the_event_and_nudge_erase_no_store_holds_her_personal_data(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    inputs = tmp_path / "input.jsonl"
    inputs.write_bytes(b"\n".join(erin_and_others(erase_at=230)) + b"\n")
    cfg = config_mod.load(write_config(tmp_path / "nudge.toml", out))
    run_main(build_flow(cfg, source=JsonlSource([inputs], 50)),
             epoch_interval=timedelta(milliseconds=50))
    decisions = (out / "decisions.jsonl").read_text()
    assert '"erin-77"' in decisions and '"bob"' in decisions
    # the event alone: her email left the outbox, her entries the ledger and the view
    assert len(list((out / "outbox").glob("*.eml"))) == 1
    ledger = Ledger(out / "ledger")
    assert ledger.keys_of("erin-77") == [] and ledger.keys_of("bob") != []
    ledger.close()
    view = ProfileStore(out / "profiles", read_only=True)
    assert view.get("erin-77") is None and view.get("bob") is not None
    view.close()
    assert _files_mentioning(out, SECRET)  # the decision log and outcomes still name her

    report = erase(cfg, "erin-77", None, kafka=False, now_ms=1_800_000_000_000)
    assert not report.held
    assert _files_mentioning(out, SECRET) == []
    assert len(list((out / "outbox").glob("*.eml"))) == 1  # Bob's email stays
    assert '"bob"' in (out / "decisions.jsonl").read_text()
    assert b'"event":"Erasure Requested"' in report.events[0]
    assert b'"userId":"erin-77"' in report.events[0]


@pytest.mark.broker
def test_nudge_erase_produces_the_event_keyed_by_the_customer(broker: Any,
                                                               tmp_path: Path) -> None:
    topic = broker.create_topic("erasure-events")
    cfg = config_mod.load(write_config(tmp_path / "nudge.toml", tmp_path / "out", kafka={
        "brokers": [broker.bootstrap], "topic": topic}))
    report = erase(cfg, "erin-77", None, now_ms=1_790_000_000_000)
    assert report.produced_to == f"topic {topic}"
    records = broker.consume_all(topic)
    assert [(key, parse_record(value, LIMITS).kind, parse_record(value, LIMITS).customer_id)
            for _, _, key, value, _ in records] == \
        [(b"erin-77", Kind.ERASURE_REQUESTED, "erin-77")]
