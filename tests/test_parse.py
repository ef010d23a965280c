"""The edge: every kind of bad record becomes a dead letter with a reason; good ones parse."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import EventsConfig
from nudge.core.errors import InputError
from nudge.core.events import TRACK_NAMES, Event, Kind, RawChunk
from nudge.flows.contract import Ignored, Refused
from nudge.flows.fastpath import read_fast
from nudge.flows.fullpath import read_full
from nudge.flows.parse import Limits, PartitionClock, parse_chunk, parse_record
from tests.events import add, identify, product, track

LIMITS = Limits.from_config(EventsConfig(max_payload_bytes=4096), now_ms=1_800_000_000_000)


def reason(raw: bytes) -> str:
    with pytest.raises(InputError) as info:
        parse_record(raw, LIMITS)
    return info.value.reason


def doc(**fields: object) -> bytes:
    base: dict[str, object] = {"type": "track", "event": "Product Added", "userId": "c1",
                               "timestamp": "2026-10-05T10:00:00Z", "properties": product()}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"type": "track", "event": ', "invalid_json"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (b"42", "not_an_object"),
    (b"", "empty_record"),
    (b"   ", "empty_record"),
    (b'{"a": NaN}', "invalid_json"),
    (doc(type="pages"), "unknown_type"),
    (doc(event="Product Teleported"), "unknown_event"),
    (doc(userId=None), "missing_id"),
    (doc(timestamp=None), "missing_timestamp"),
    (doc(timestamp="yesterday"), "bad_timestamp"),
    (doc(timestamp="2026-10-05T10:00:00"), "bad_timestamp"),
    (doc(timestamp=1791199740), "bad_timestamp"),
    (doc(timestamp="1970-01-02T00:00:00Z"), "timestamp_out_of_range"),
    (doc(timestamp="2099-01-01T00:00:00Z"), "timestamp_out_of_range"),
    (doc(properties=product(price="9.99")), "wrong_type"),
    (doc(properties=product(price=-1.0)), "out_of_range"),
    (doc(properties=product(quantity=-2)), "out_of_range"),
    (doc(properties=product(quantity=1.5)), "wrong_type"),
    (doc(properties=[1]), "wrong_type"),
    (doc(properties={"name": "no id"}), "missing_field"),
    (doc(messageId=7), "wrong_type"),
    (doc(userId={"id": 1}), "wrong_type"),
    (doc(userId="x" * 300), "field_too_long"),
    (b'{"type":"identify","userId":"c1","timestamp":"2026-10-05T10:00:00Z",'
     b'"traits":{"email":"not-an-address"}}', "invalid_email"),
    (b'{"type":"identify","userId":"c1","timestamp":"2026-10-05T10:00:00Z",'
     b'"traits":{"timezone":"Mars/Olympus"}}', "invalid_timezone"),
    (b'{"type":"identify","userId":"c1","timestamp":"2026-10-05T10:00:00Z",'
     b'"traits":{"marketing_consent":"yes"}}', "wrong_type"),
    (b'{"type":"track","event":"Order Completed","userId":"c1",'
     b'"timestamp":"2026-10-05T10:00:00Z","properties":{"revenue":"lots"}}', "wrong_type"),
    (b'{"type":"track","event":"Order Completed","userId":"c1",'
     b'"timestamp":"2026-10-05T10:00:00Z","properties":{"products":{"a":1}}}', "wrong_type"),
    (b"[" * 2000 + b"]" * 2000, "invalid_json"),
])
def test_bad_records_are_rejected_with_a_reason(raw: bytes, expected: str) -> None:
    assert reason(raw) == expected


def test_oversize_payload_is_rejected_before_parsing() -> None:
    raw = doc(properties=product(name="x" * 5000))
    assert reason(raw) == "payload_too_large"


def test_v2_names_and_v1_aliases_parse_to_the_same_kind() -> None:
    for v2, v1 in [("Product Added", "Added Product"), ("Order Completed", "Completed Order"),
                   ("Product Viewed", "Viewed Product"), ("Cart Viewed", "Viewed Cart"),
                   ("Checkout Started", "Started Checkout"),
                   ("Product Removed", "Removed Product")]:
        assert parse_record(doc(event=v2), LIMITS).kind == parse_record(doc(event=v1), LIMITS).kind


def test_good_track_event_fields() -> None:
    ev = parse_record(add("c9", 0, pid="sku-7", qty=3), LIMITS)
    assert (ev.kind, ev.customer_id, ev.products[0].product_id, ev.products[0].quantity) == (
        Kind.PRODUCT_ADDED, "c9", "sku-7", 3)
    assert ev.ts == 1791194400000


def test_anonymous_id_keys_when_user_id_is_absent() -> None:
    ev = parse_record(doc(userId=None, anonymousId="anon-1"), LIMITS)
    assert (ev.customer_id, ev.anonymous_id) == ("anon:anon-1", None)


def test_identify_traits() -> None:
    ev = parse_record(identify("c1", 0, email="ann@example.com", consent=False,
                               tz="Europe/Berlin"), LIMITS)
    assert ev.kind == Kind.IDENTIFY and ev.traits is not None
    assert (ev.traits.email, ev.traits.marketing_consent, ev.traits.timezone) == (
        "ann@example.com", False, "Europe/Berlin")


def test_ignored_names_are_counted_not_dead_lettered() -> None:
    limits = Limits.from_config(EventsConfig(ignore=("Signed In",)), now_ms=1_800_000_000_000)
    chunk = RawChunk("p", 1, "f", -1, [(1, track("Signed In", "c1", 0)), (2, b"{")])
    events, dead, ignored = parse_chunk(chunk, limits)
    assert (len(events), [d.reason for d in dead], ignored) == (0, ["invalid_json"], 1)
    assert dead[0].position is not None and dead[0].position.offset == 2
    assert dead[0].raw == b"{"


def _ev(ts: int) -> Event:
    return Event(ts, "c", 0, 0, Kind.PRODUCT_VIEWED, "")


def test_partition_clock_raises_late_events_to_the_watermark() -> None:
    clock = PartitionClock(lateness=100)
    out = clock.admit([_ev(1000), _ev(950), _ev(2000), _ev(1500), _ev(1950)])
    assert [e.ts for e in out] == [1000, 950, 2000, 1900, 1950]
    assert clock.late == 1
    assert clock.tick() == (1900, True)
    assert clock.tick() == (1900, False)


def test_partition_clock_heartbeat_moves_an_idle_partition() -> None:
    clock = PartitionClock(lateness=100)
    clock.admit([_ev(1000)])
    clock.tick()
    clock.observe_heartbeat(5000)
    assert clock.tick() == (5000, True)
    assert [e.ts for e in clock.admit([_ev(4000)])] == [5000]


_field_values = st.one_of(st.none(), st.text(max_size=6), st.integers(-3, 3),
                          st.floats(allow_nan=False), st.booleans())


@settings(max_examples=400, deadline=None)
@given(
    event=st.sampled_from(["Product Viewed", "Added Product", "Product Removed", "Bogus"]),
    user=st.one_of(st.text(min_size=0, max_size=4), st.integers(0, 9), st.none()),
    ts=st.sampled_from(["2026-10-05T10:00:07.250Z", "2026-10-05T10:00:61.250Z",
                        "2026-10-05T10:00:0x.250Z", "2026-13-05T10:00:07.250Z",
                        "2026-10-05T10:00:07.25Z", "2026-10-05T10:00:07.250+01:00",
                        "2026-10-05T10:00:\u0661\u0662.250Z"]),
    price=_field_values, qty=_field_values, name=_field_values, pid=_field_values,
)
def test_fast_path_and_full_path_agree(event: str, user: object, ts: str, price: object,
                                       qty: object, name: object, pid: object) -> None:
    props = {k: v for k, v in {"product_id": pid, "name": name, "price": price,
                               "quantity": qty, "category": "c"}.items() if v is not None}
    raw = orjson.dumps({"type": "track", "event": event, "userId": user, "messageId": "m",
                        "timestamp": ts, "properties": props})
    doc_ = orjson.loads(raw)
    fast = read_fast(raw, LIMITS, 3, 5)
    try:
        full: Event | str = read_full(doc_, LIMITS, 3, 5)
    except InputError as exc:
        full = exc.reason
    if fast is not None:
        assert fast == full


_any = st.one_of(st.none(), st.text(max_size=5), st.integers(-2, 12_000), st.booleans(),
                 st.floats(allow_nan=False, allow_infinity=False, width=32))
_stamps = st.sampled_from([
    "2026-10-05T10:00:07.250Z", "2026-10-05t10:00:07z", "2026-10-05 10:00:07+02:00",
    "2026-10-05T10:00:07.1234567Z", "2026-10-05T10:00:07.0014995Z", "2026-10-05T10:00Z",
    "20261005T100007Z", "2026-10-05T23:59:60Z", "2026-10-05T10:00:07", "1999-12-31T23:59:59Z",
])
_product_docs = st.dictionaries(
    st.sampled_from(["product_id", "sku", "id", "name", "price", "quantity", "category",
                     "image_url", "url"]), _any, max_size=7)
_props = st.one_of(st.none(), _product_docs, st.fixed_dictionaries({}, optional={
    "order_id": _any, "revenue": _any, "total": _any,
    "products": st.one_of(_any, st.lists(_product_docs, max_size=3))}))
_traits = st.one_of(st.none(), _any, st.fixed_dictionaries({}, optional={
    "email": st.sampled_from(["a@b.example", " a@b.example ", "nope", "", "a b@c.d"]),
    "first_name": _any, "last_name": _any, "marketing_consent": _any,
    "timezone": st.sampled_from(["Europe/Berlin", "UTC", "Mars/Base", ""])}))


@settings(max_examples=1500, deadline=None)
@given(kind=st.sampled_from(["track", "identify", "page", "screen", "alias", "group",
                             "pages", None]),
       event=st.sampled_from([*TRACK_NAMES, "Bogus", None]),
       user=st.one_of(st.none(), st.sampled_from(["", "c1"]), st.integers(0, 3)),
       anon=st.one_of(st.none(), st.sampled_from(["", "a1"])),
       mid=st.one_of(st.none(), st.sampled_from(["", "m1"]), st.integers(0, 2)),
       ts=_stamps, props=_props, traits=_traits, ctx_traits=_traits)
def test_fast_path_accepts_nothing_the_full_path_reads_differently(
        kind: object, event: object, user: object, anon: object, mid: object, ts: str,
        props: object, traits: object, ctx_traits: object) -> None:
    fields = {"type": kind, "event": event, "userId": user, "anonymousId": anon,
              "messageId": mid, "timestamp": ts, "properties": props, "traits": traits,
              "context": {"traits": ctx_traits} if ctx_traits is not None else None}
    raw = orjson.dumps({k: v for k, v in fields.items() if v is not None or k == "properties"})
    fast = read_fast(raw, LIMITS, 3, 5)
    try:
        full: Event | str = read_full(orjson.loads(raw), LIMITS, 3, 5)
    except InputError as exc:
        full = exc.reason
    except Ignored:
        full = "ignored"
    except Refused as exc:  # a blocked identifier: only the full path refuses
        assert fast is None
        full = exc.event
    if fast is not None:
        assert fast == full
    try:
        assert parse_record(raw, LIMITS, 3, 5) == full
    except InputError as exc:
        assert exc.reason == full
    except Refused as exc:
        assert exc.event == full
    except Ignored:
        assert full == "ignored"


def test_rudderstack_identify_traits_under_context_count() -> None:
    """RudderStack's SDKs send an identify's traits only under `context.traits`: its email
    and consent are the customer's, on either path; top-level traits win field by field."""
    raw = orjson.dumps({"type": "identify", "userId": "r1", "timestamp": "2026-10-05T10:00:00Z",
                        "context": {"traits": {"email": "r1@example.com",
                                               "marketing_consent": True},
                                    "library": {"name": "analytics-python"}}})
    ev = parse_record(raw, LIMITS)
    assert (ev.traits.email, ev.traits.marketing_consent) == ("r1@example.com", True)
    assert read_fast(raw, LIMITS, 0, 0) == ev
    both = orjson.dumps({"type": "identify", "userId": "r1", "timestamp": "2026-10-05T10:00:00Z",
                         "traits": {"marketing_consent": False},
                         "context": {"traits": {"email": "r1@example.com",
                                                "marketing_consent": True}}})
    ev = parse_record(both, LIMITS)
    assert (ev.traits.email, ev.traits.marketing_consent) == ("r1@example.com", False)


def test_other_segment_calls_are_read_or_ignored_never_dead_letters() -> None:
    def call(kind: str, **fields: object) -> bytes:
        return orjson.dumps({"type": kind, "userId": "c1",
                             "timestamp": "2026-10-05T10:00:00Z", **fields})
    with pytest.raises(Ignored):
        parse_record(call("group", groupId="g1"), LIMITS)
    assert parse_record(call("page", name="Home"), LIMITS).kind == Kind.PAGE
    assert parse_record(call("screen"), LIMITS).kind == Kind.PAGE
    view = parse_record(call("page", properties={"product_id": "p1", "price": 3.0}), LIMITS)
    assert (view.kind, view.products[0].product_id) == (Kind.PRODUCT_VIEWED, "p1")
    alias = parse_record(call("alias", previousId="a1"), LIMITS)
    assert (alias.kind, alias.customer_id, alias.anonymous_id) == (Kind.ALIAS, "c1", "a1")
    for name in ("Product Added to Wishlist", "Products Searched", "Product List Viewed",
                 "Coupon Applied", "Order Refunded", "Order Cancelled"):
        with pytest.raises(Ignored):
            parse_record(track(name, "c1", 0), LIMITS)


def test_user_ids_and_anonymous_ids_are_different_namespaces() -> None:
    user = parse_record(doc(userId="c1"), LIMITS)
    anonymous = parse_record(doc(userId=None, anonymousId="c1"), LIMITS)
    reserved = parse_record(doc(userId="anon:c1"), LIMITS)
    assert (user.customer_id, anonymous.customer_id, reserved.customer_id) == (
        "c1", "anon:c1", "user:anon:c1")
    both = parse_record(doc(userId="c1", anonymousId="a1"), LIMITS)
    assert (both.customer_id, both.anonymous_id) == ("c1", "a1")
