"""The customer record's typed parts and its encoding (nudge/state/customer.py, parts.py,
layout.py): fields declared once, encoded from the declaration, a format number first, a
record of the previous format migrated, any other refused naming the shard."""

from __future__ import annotations

import msgspec
import pytest

from nudge.core.config import Config, EventsConfig
from nudge.core.errors import SnapshotError
from nudge.core.records import ShardChunk
from nudge.flows.contract import Limits, parse_record
from nudge.state.customer import FIELDS, FORMAT, Customer, decode, encode
from nudge.state.layout import Codec, fields_of
from nudge.state.parts import CartLine, DecisionNote, JourneyState
from nudge.state.program import compile_program
from nudge.state.shard import Shard
from tests.events import add, identify, product, track, view
from tests.harness import Pipeline

# Customer "E" as format 5 wrote it (the commit before the typed parts: journeys, cart lines
# and decisions as positional lists): an identify, a view, three products added, a cart
# email sent, then a second episode open and due.
FORMAT_5 = bytes.fromhex(
    "dc001f059083a5736b752d3196ad50726f6475637420736b752d31cb403400000000000001a76170706172"
    "656cd92268747470733a2f2f73686f702e6578616d706c652f696d672f736b752d312e6a7067bc687474"
    "70733a2f2f73686f702e6578616d706c652f702f736b752d31a5736b752d3296ad50726f647563742073"
    "6b752d32cb403400000000000002a76170706172656cd92268747470733a2f2f73686f702e6578616d70"
    "6c652f696d672f736b752d322e6a7067bc68747470733a2f2f73686f702e6578616d706c652f702f736b"
    "752d32a5736b752d3396ad50726f6475637420736b752d33cb403400000000000001a76170706172656c"
    "d92268747470733a2f2f73686f702e6578616d706c652f696d672f736b752d332e6a7067bc6874747073"
    "3a2f2f73686f702e6578616d706c652f702f736b752d33c3cf000001a10b81850084a9763a6170706172"
    "656c92cd50fb01aa76683a6170706172656c92ce0007979201a9613a6170706172656c92cd50fb03aa61"
    "683a6170706172656c94ce0007979202ce00079795019197b0636172745f6162616e646f6e6d656e7401"
    "01cf000001a10bbb32a0a473656e74c0c0ad65406578616d706c652e636f6dcb4085a86324bd10d3a341"
    "6e6e00cf000001a10b81850081b0636172745f6162616e646f6e6d656e74990201cf000001a10c37b5a0"
    "00cf000001a10c6ea4200001cf000001a10c37b5a0cf000001a10bbb32a0c000cf000001a10c37b5a0cf"
    "000001a10b826f6090cb000000000000000000919ab0636172745f6162616e646f6e6d656e740101cf00"
    "0001a10bbb32a0cf000001a11b2e46a089b5646179735f73696e63655f6c6173745f6f72646572cb4076"
    "d00000000000ab6f72646572735f33363564cb0000000000000000ae6c6f675f7370656e645f33363564"
    "cb0000000000000000a876696577735f3764cb3ff0000000000000ac636172745f616464735f3764cb40"
    "00000000000000ae6c6f675f636172745f76616c7565cb40107188eb126c0dae6c6f675f656e67616765"
    "6d656e74cb3ff62b3044d9a701b0656d61696c5f636c69636b735f333064cb0000000000000000a96861"
    "735f656d61696ccb3ff0000000000000a473656e74c000c291a5736b752d3100009091cf000001a10bbb"
    "32a001cb0000000000000000c090cf000001a10c6ea420")


def test_the_fields_are_the_stored_schema() -> None:
    # A change here changes what encode writes: give customer.FORMAT a new number (and
    # decode a migration from this one) in the same change.
    assert FORMAT == 6
    assert fields_of(JourneyState) == ("anchor", "deferred", "due", "entries", "episode",
                                       "last_entry", "last_exit", "next_stage", "open")
    assert fields_of(CartLine) == ("category", "image_url", "name", "price", "quantity", "url")
    assert fields_of(DecisionNote) == ("due", "episode", "outcome", "reason", "stage",
                                       "trigger", "variant")
    assert FIELDS == (
        "bought", "cart", "consent", "consent_at", "counters", "decisions", "email",
        "engagement", "first_name", "first_order", "first_seen", "journeys", "last_name",
        "last_order", "last_seen", "last_view", "links", "order_gap", "orders", "outcomes",
        "recent", "seg_due", "seg_next", "segments", "sends", "session", "spend", "timezone",
        "unsubs", "wake")


def _journey_run() -> Customer:
    p = Pipeline(Config(shards=1))
    p.feed([identify("E", 0, email="e@example.com"), view("E", 1), add("E", 2),
            add("E", 3, "sku-2", 2), track("Product Viewed", "z", 200, product("sku-2")),
            add("E", 170, "sku-3")])
    p.end()
    c = p.shards[0].customer("E")
    assert c is not None
    return c


def test_a_record_with_every_part_round_trips_typed() -> None:
    c = _journey_run()
    back = decode(encode(c))
    assert encode(back) == encode(c)
    st = back.journeys["cart_abandonment"]
    assert isinstance(st, JourneyState)
    assert (st.episode, st.open, st.next_stage, st.entries, st.deferred) == (2, True, 0, 1, False)
    assert st.due == c.journeys["cart_abandonment"].due > st.anchor
    assert all(isinstance(line, CartLine) for line in back.cart.values())
    assert back.cart["sku-2"].quantity == 2 and back.cart["sku-2"].price == 20.0
    (note,) = back.decisions
    assert isinstance(note, DecisionNote)
    assert (note.trigger, note.episode, note.stage, note.outcome) == \
        ("cart_abandonment", 1, 1, "sent")


def test_a_record_of_format_5_is_migrated_to_the_same_state() -> None:
    old = decode(FORMAT_5)
    now = _journey_run()
    assert encode(old) == encode(now)  # the same events give the same record, typed
    assert msgspec.msgpack.decode(encode(old))[0] == FORMAT
    assert old.journeys["cart_abandonment"].open is True
    assert old.journeys["cart_abandonment"].last_exit == \
        old.decisions[0].due  # the first episode closed when its one stage was reached


@pytest.mark.parametrize("found", [4, 7, "x"])
def test_a_record_of_another_format_is_refused(found: object) -> None:
    v = msgspec.msgpack.decode(FORMAT_5)
    v[0] = found
    with pytest.raises(SnapshotError, match=f"a customer record is of format {found}"):
        decode(msgspec.msgpack.encode(v))
    with pytest.raises(SnapshotError, match="format None"):
        decode(msgspec.msgpack.encode({"not": "a record"}))


def test_the_shard_names_itself_when_a_stored_record_is_refused() -> None:
    program = compile_program(Config(shards=8))
    snap = Shard(5, program).snapshot()
    v = msgspec.msgpack.decode(FORMAT_5)
    v[0] = 99
    snap["store"] = {"count": 1, "records": {"E": msgspec.msgpack.encode(v)}}
    shard = Shard(5, program, snap)
    limits = Limits.from_config(EventsConfig(), now_ms=1_900_000_000_000)
    ev = parse_record(add("E", 500), limits)
    with pytest.raises(SnapshotError, match=r"a customer record of shard 5 is of format 99"):
        shard.process([ShardChunk(5, "p", 1, [ev], ev.ts + 1, False, ev.ts)])


@pytest.mark.parametrize("sample", [JourneyState(0, False, 0, 1, 1, 0, 0, 0, True),
                                    CartLine("c", "", "n", 1.0, 1, ""),
                                    DecisionNote(0, 1, "sent", None, 1, "cart", None)])
def test_each_part_takes_its_fields_in_the_encoded_order(sample: object) -> None:
    # Decoding calls cls(*fields in name order). Each field gets a value its type accepts
    # (compiled, the class checks), distinct from the others': one out of place shows.
    cls = type(sample)
    names = fields_of(cls)
    values = []
    for i, name in enumerate(names):
        for value in (1000 + i, f"value-{i}", 1000.5 + i, i % 2 == 0):
            try:
                setattr(sample, name, value)
            except TypeError:
                continue
            values.append(value)
            break
    assert len(values) == len(names)
    made = cls(*values)
    assert [getattr(made, n) for n in names] == values
    back = Codec({1: cls}).decode(Codec({1: cls}).encode(made))
    assert [getattr(back, n) for n in names] == values


def test_the_codec_refuses_what_it_does_not_know() -> None:
    codec = Codec({7: CartLine})
    with pytest.raises(TypeError, match="JourneyState is not a registered record"):
        codec.encode([JourneyState(0, False, 0, 1, 1, 0, 0, 0, True)])
    data = Codec({8: CartLine}).encode(CartLine("c", "", "n", 1.0, 1, ""))
    with pytest.raises(ValueError, match="unknown record code 8"):
        codec.decode(data)
    with pytest.raises(SnapshotError, match="unreadable: unknown record code 8"):
        decode(Codec({8: CartLine}).encode([6, CartLine("c", "", "n", 1.0, 1, "")]))
    with pytest.raises(ValueError, match="taken or out of range"):
        Codec({128: CartLine})
