"""Records crossing workers pickle through nudge/flows/exchange.py's reducers and come back
equal, field for field: every item that enters a stateful step of the demo's configuration
(the harness runs the same step functions as the flow)."""

from __future__ import annotations

import copyreg
import dataclasses
import itertools
import pickle
import pickletools
from typing import Any

import pytest

from nudge.app.runflow import DEMO_CONFIG
from nudge.app.sample import iter_events
from nudge.core import config as config_mod
from nudge.core.records import Decision, EmailContext, Incentive, Product
from nudge.flows import exchange
from tests import harness


def _fields(x: Any) -> Any:
    """Every field, those left out of `==` too (a Decision's context)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return (type(x).__name__, [_fields(getattr(x, f.name)) for f in dataclasses.fields(x)])
    if isinstance(x, list | tuple):
        return [_fields(y) for y in x]
    if isinstance(x, dict):
        return {k: _fields(v) for k, v in x.items()}
    return x


def _builds(blob: bytes) -> bool:
    """Whether the pickle sets an object's state (BUILD): the generic form of a slotted
    dataclass (its `__getstate__`, a Python loop); a reducer's form is a call alone."""
    return any(op.name == "BUILD" for op, _, _ in pickletools.genops(blob))


def test_a_decision_with_its_context_round_trips_through_the_reducer() -> None:
    exchange.register()
    assert copyreg.dispatch_table[Decision] is not None
    cart = (Product("p1", "Mug", 9.5, 2, "kitchen", "", ""),)
    d = Decision("c1", "cart_abandonment", 1, 2, 1_700_000_000_000, "sent", None,
                 EmailContext("a@example.com", "Ada", None, "UTC", cart, 19.0),
                 "B", "cart.html", "Still there?", 0.25, Incentive("10% off", "TEN"))
    blob = pickle.dumps(d)
    assert not _builds(blob)
    back = pickle.loads(blob)
    assert _fields(back) == _fields(d)


def test_every_record_has_a_reducer_that_rebuilds_it() -> None:
    for cls in exchange.RECORDS:
        assert dataclasses.is_dataclass(cls) and "__slots__" in vars(cls), cls
        exchange.reducer(cls)  # raises for a field outside __init__


@pytest.fixture(scope="module")
def crossing() -> dict[str, list[Any]]:
    """Every item the demo configuration's stateful steps received, by step."""
    seen: dict[str, list[Any]] = {}
    plain = harness._stateful

    def recording(logics: Any, builder: Any, items: Any, eof: bool = False) -> Any:
        name = getattr(builder, "func", builder).__name__
        seen.setdefault(name, []).extend(items)
        out = plain(logics, builder, items, eof)
        seen.setdefault(name + " out", []).extend(out)
        return out

    harness._stateful = recording
    try:
        p = harness.Pipeline(config_mod.load(DEMO_CONFIG))
        lines = list(itertools.islice(iter_events(customers=150, days=10, seed=3), 3000))
        for i in range(0, len(lines), 250):
            p.feed(lines[i:i + 250])
        p.end()
    finally:
        harness._stateful = plain
    return seen


def test_what_crosses_workers_comes_back_equal(crossing: dict[str, list[Any]]) -> None:
    exchange.register()
    kinds: set[str] = set()
    for items in crossing.values():
        for item in items:
            blob = pickle.dumps(item)
            assert not _builds(blob), type(item[1])
            back = pickle.loads(blob)
            assert _fields(back) == _fields(item)
            assert repr(back) == repr(item)  # the same types too (5.0 is not 5)
            kinds.add(type(item[1]).__name__)
    assert {"ShardChunk", "ShardOutput", "DecideInput", "Decision"} <= kinds, kinds
