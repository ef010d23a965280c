"""The product catalog: feed formats, event-time application, the memory cap, and the decide
step's join of decisions with it (the same output for any batching and after a resume)."""

from __future__ import annotations

import pickle
from pathlib import Path

import orjson
import pytest

from nudge.core.events import Product
from nudge.core.records import OUTCOME_SENT, Decision, EmailContext, ShardMark
from nudge.flows.catalog import CatalogChunk, CatalogParseLogic
from nudge.flows.decide import DecideInputs, Decider
from nudge.scoring.catalog import Catalog, CatalogEntry, CatalogUpdate
from nudge.scoring.catalogfeed import FeedError, envelope, parse_raw
from nudge.sources.catalogfiles import read_records
from nudge.state.outputs import DecideInput

# -- feed formats ---------------------------------------------------------------------------

MERCHANT_CSV = (
    "id,title,price,sale_price,availability,link,image_link,product_type,brand,updated_at\n"
    'sku-1,"Linen Shirt, white",49.00 EUR,39.50 EUR,in stock,https://shop.example/p/1,'
    "https://shop.example/i/1.jpg,apparel,Acme,2026-10-05T10:00:00+02:00\n"
    "sku-2,Belt,19,,out of stock,https://shop.example/p/2,,apparel,,\n"
    "sku-3,Broken,-4,,in stock,,,,,\n"
)


def test_google_merchant_csv_and_tsv(tmp_path: Path) -> None:
    csv_file = tmp_path / "feed.csv"
    csv_file.write_text(MERCHANT_CSV)
    tsv_file = tmp_path / "feed.tsv"
    tsv_file.write_text(MERCHANT_CSV.replace('"Linen Shirt, white"', "Linen Shirt, white")
                        .replace(",", "\t").replace("Shirt\t white", "Shirt, white"))
    for path in (csv_file, tsv_file):
        records = list(read_records(path))
        assert [pos for pos, _ in records] == [2, 3, 4]  # rows, the header being row 1
        shirt = parse_raw(records[0][1], "f", 2)
        assert shirt.ts == 1_791_187_200_000  # 08:00 UTC
        e = shirt.entry
        assert e is not None
        assert (e.title, e.price, e.sale_price, e.current_price, e.availability, e.brand,
                e.product_type) == ("Linen Shirt, white", 49.0, 39.5, 39.5, "in_stock", "Acme",
                                    "apparel")
        belt = parse_raw(records[1][1], "f", 3).entry
        assert belt is not None and belt.sale_price is None and not belt.in_stock
        assert parse_raw(records[1][1], "f", 3).ts == 0  # no time column: known from the start
        with pytest.raises(FeedError) as err:
            parse_raw(records[2][1], "f", 4)
        assert err.value.reason == "out_of_range"


def test_jsonl_names_and_bad_records(tmp_path: Path) -> None:
    u = parse_raw(b'{"product_id": "sku-9", "name": "Mug", "price": 9.5, "url": "https://s/p",'
                  b' "image_url": "https://s/i", "category": "home", "deleted": false}', "f", 1)
    assert u.entry is not None and (u.entry.title, u.entry.link, u.entry.product_type) == \
        ("Mug", "https://s/p", "home")
    gone = parse_raw(b'{"id": "sku-9", "deleted": true, "updated_at": "2026-10-05T00:00:00Z"}',
                     "f", 2)
    assert gone.entry is None and gone.ts > 0
    cases = {
        b'{"title": "x", "price": 1}': "missing_id",
        b'{"id": "a", "price": 1}': "missing_field",
        b'{"id": "a", "title": "x"}': "missing_field",
        b'{"id": "a", "title": "x", "price": "cheap"}': "wrong_type",
        b'{"id": "a", "title": "x", "price": 1, "availability": "maybe"}': "out_of_range",
        b'{"id": "a", "title": "x", "price": 1, "updated_at": "yesterday"}': "bad_timestamp",
        b'{"id": "a", "title": "x", "price": 1, "updated_at": "2026-10-05T00:00:00"}':
            "bad_timestamp",
        b'{"id": "a", "title": 5, "price": 1}': "wrong_type",
        b'{"id": "a\\n", "title": "x", "price": 1}': "wrong_type",
        b'{"id": "' + b"x" * 300 + b'", "title": "x", "price": 1}': "field_too_long",
        b"[1]": "not_an_object",
        b"{nope": "invalid_json",
        b"   ": "empty_record",
    }
    for raw, reason in cases.items():
        with pytest.raises(FeedError) as err:
            parse_raw(raw, "f", 1)
        assert err.value.reason == reason, raw


def test_kafka_envelope_key_timestamp_and_tombstone() -> None:
    value = orjson.dumps({"id": "sku-1", "title": "Shirt", "price": 10})
    u = parse_raw(envelope(b"sku-1", 1_000, value), "t/0", 5)
    assert (u.product_id, u.ts, u.offset) == ("sku-1", 1_000, 5)  # the message's time
    stamped = orjson.dumps({"id": "sku-1", "title": "S", "price": 1,
                            "updated_at": "1970-01-01T00:00:02Z"})
    assert parse_raw(envelope(b"sku-1", 1_000, stamped), "t/0", 6).ts == 2_000  # its own
    gone = parse_raw(envelope(b"sku-1", 3_000, None), "t/0", 7)
    assert gone.entry is None and gone.ts == 3_000 and gone.product_id == "sku-1"
    # the value of a keyed message without an id takes the key; another id is refused
    assert parse_raw(envelope(b"sku-4", None, b'{"title": "T", "price": 1}'), "t", 1).ts == 0
    with pytest.raises(FeedError, match="key_mismatch"):
        parse_raw(envelope(b"sku-2", None, value), "t/0", 8)
    with pytest.raises(FeedError, match="missing_id"):
        parse_raw(envelope(None, None, None), "t/0", 9)


# -- the catalog in event time ----------------------------------------------------------------

def entry(pid: str, title: str, ts: int, *, stock: str = "in_stock",
          ptype: str = "apparel") -> CatalogEntry:
    return CatalogEntry(pid, title, 10.0, None, stock, f"https://shop.example/p/{pid}", "",
                        ptype, "", ts)


def upd(pid: str, ts: int, title: str | None, offset: int = 0, **kw: str) -> CatalogUpdate:
    return CatalogUpdate(pid, ts, None if title is None else entry(pid, title, ts, **kw),
                         "p", offset)


def test_updates_apply_in_event_time_order_whatever_the_arrival_order() -> None:
    updates = [upd("a", 30, "A3", 3), upd("a", 10, "A1", 1), upd("b", 20, "B", 2),
               upd("a", 20, None, 4), upd("a", 20, "A2", 5)]
    seen = []
    for order in (updates, updates[::-1], sorted(updates, key=lambda u: u.product_id)):
        cat = Catalog()
        for u in order:
            cat.add(u)
        states = []
        for t in (9, 10, 20, 29, 30):
            cat.advance(t)
            a = cat.get("a")
            states.append((a.title if a else None, "b" in cat))
        seen.append(states)
    # at 20 the removal (offset 4) and the new version (offset 5) share an instant: position
    assert seen[0] == [(None, False), ("A1", False), ("A2", True), ("A2", True), ("A3", True)]
    assert seen[0] == seen[1] == seen[2]


def test_out_of_stock_products_are_not_recommendable_and_the_cap_holds() -> None:
    cat = Catalog(max_products=2)
    cat.add(upd("a", 1, "A"))
    cat.add(upd("b", 1, "B", stock="out_of_stock"))
    cat.add(upd("c", 1, "C"))  # a third product: refused at the cap
    cat.advance(1)
    assert (len(cat), cat.refused) == (2, 1)
    assert cat.category("a") == "apparel" and cat.category("b") is None and "c" not in cat
    cat.add(upd("a", 2, "A again"))  # a known product keeps updating
    cat.add(upd("b", 2, None))  # a removal frees a place
    cat.add(upd("c", 3, "C"))
    cat.advance(3)
    assert cat.get("a").title == "A again" and "b" not in cat and "c" in cat  # type: ignore[union-attr]


def test_snapshot_round_trip_keeps_pending_updates() -> None:
    cat = Catalog()
    for n in range(20):
        cat.add(upd(f"p{n % 7}", n * 10, f"T{n}", n))
    cat.advance(95)
    back = Catalog(resume=pickle.loads(pickle.dumps(cat.snapshot())))
    for c in (cat, back):
        c.advance(1_000)
    assert back.products() == cat.products() and back.categories == cat.categories
    assert back.version == cat.version and len(back) == len(cat) == 7
    # only the segment of a changed product is encoded again
    before = cat.snapshot()["segments"]
    cat.add(upd("p3", 2_000, "changed"))
    cat.advance(2_000)
    after = cat.snapshot()["segments"]
    assert sum(a is not b for a, b in zip(before, after, strict=True)) == 1
    assert Catalog(resume=cat.snapshot()).get("p3").title == "changed"  # type: ignore[union-attr]


# -- decide: decisions joined with the catalog by event time ----------------------------------

def decision(cid: str, due: int, recent: tuple[str, ...]) -> Decision:
    ctx = EmailContext(f"{cid}@example.com", cid, None, None, recent=recent,
                       cart=(Product("own", "Own", 1.0, 1, "x", "", ""),))
    return Decision(cid, "browse_abandonment", 1, 1, due, OUTCOME_SENT, None, ctx)


def catalog_chunks(lines: list[bytes], sizes: list[int], final_after: bool) -> list[CatalogChunk]:
    from nudge.core.config import EventsConfig
    from nudge.core.events import RawChunk

    logic = CatalogParseLogic(EventsConfig(allowed_lateness=0), None)
    out: list[CatalogChunk] = []
    pos = 0
    for i, n in enumerate(sizes):
        recs = [(pos + k + 1, raw) for k, raw in enumerate(lines[pos:pos + n])]
        pos += n
        last = i == len(sizes) - 1
        out.extend(logic.on_batch([RawChunk("cat", 1, "catalog.jsonl", -1, recs, None,
                                            last and final_after)])[0])
    return out


LINES = [orjson.dumps({"id": "sku-1", "title": t, "price": 10, "updated_at": at})
         for t, at in (("Shirt v1", "1970-01-01T00:00:01Z"), ("Shirt v2", "1970-01-01T00:00:05Z"),
                       ("Shirt v3", "1970-01-01T00:00:09Z"))] + [b"not json"]


def run_decide(sizes: list[int], *, snapshot_at: int | None = None) -> list[tuple[str, str]]:
    """Two decisions (due 4 s and 7 s) and the catalog in chunks of `sizes`: which version of
    sku-1 each one shows."""
    d = Decider(1, None, catalog=True)
    out: list[Decision] = []
    items: list[DecideInputs] = [DecideInput([decision("ann", 4_000, ("sku-1",))]),
                                 DecideInput([decision("bob", 7_000, ("sku-1",))]),
                                 DecideInput(mark=ShardMark(0, 20_000, False))]
    chunks = catalog_chunks(LINES, sizes, final_after=False)
    # interleave: the shard's items first, then the catalog's chunks one by one
    for n, item in enumerate([*items, *chunks]):
        out.extend(d.feed([item]))
        if snapshot_at is not None and n == snapshot_at:
            d = Decider(1, None, pickle.loads(pickle.dumps(d.snapshot())), catalog=True)
    out.extend(d.feed([DecideInput(mark=ShardMark(0, None, True))]))
    out.extend(d.release(everything=True))
    return [(x.customer_id, x.context.viewed[0].name if x.context and x.context.viewed else "")
            for x in out]


def test_decisions_wait_for_the_catalog_and_see_it_as_of_their_due_time() -> None:
    expected = [("ann", "Shirt v1"), ("bob", "Shirt v2")]
    assert run_decide([4]) == expected
    for sizes in ([1, 1, 1, 1], [2, 2], [3, 1], [1, 3]):
        assert run_decide(sizes) == expected, sizes
        for at in range(3, 3 + len(sizes)):
            assert run_decide(sizes, snapshot_at=at) == expected, (sizes, at)
    # nothing is released while the catalog's watermark is behind the due times
    d = Decider(1, None, catalog=True)
    assert d.feed([DecideInput([decision("ann", 4_000, ("sku-1",))],
                               mark=ShardMark(0, 20_000, False))]) == []
    chunk = catalog_chunks(LINES[:1], [1], final_after=False)
    assert d.feed(chunk) == []  # catalog watermark 1 s
    assert [x.customer_id for x in d.feed(catalog_chunks(LINES[:3], [3], False)[-1:])] == ["ann"]


def test_catalog_dead_letters_and_no_catalog_means_no_shared_products() -> None:
    chunks = catalog_chunks(LINES, [4], final_after=True)
    assert [x.reason for c in chunks for x in c.dead] == ["invalid_json"]
    d = Decider(1, None)  # no catalog: decisions keep only the customer's own data
    [out] = d.feed([DecideInput([decision("ann", 4_000, ("sku-1",))],
                                mark=ShardMark(0, None, True))])
    assert out.context is not None and out.context.viewed == () and \
        out.context.recommendations == () and out.context.cart[0].product_id == "own"
