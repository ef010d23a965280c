"""Item statistics per shard and the global ItemModel: what gets recommended, and that it is
the same whatever the batching, snapshots or split of customers into shards."""

from __future__ import annotations

import pickle
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.events import Product
from nudge.core.timefmt import DAY, HOUR, MINUTE
from nudge.scoring.recommend import Directory, Item, ItemDelta, ItemModel, ItemStatsBuilder

# What the shop's catalog lists, product -> category: every product a test names, except
# "ghost" (counted by the model, never in the catalog).
SHOP = Directory({})


def item(pid: str, category: str = "apparel") -> Item:
    SHOP.categories.setdefault(pid, category)
    return Item(pid)


def rec(model: ItemModel, *args: object, **kwargs: object) -> list[str]:
    return model.recommend(*args, directory=SHOP, **kwargs)  # type: ignore[arg-type]


def covisit(builder: ItemStatsBuilder, ts: int, *products: str, category: str = "apparel"
            ) -> None:
    """One session viewing `products` in order, a minute apart."""
    for i, p in enumerate(products):
        builder.on_view(ts + i * MINUTE, item(p, category), list(products[:i]))


def feed(model: ItemModel, builder: ItemStatsBuilder, until: int) -> None:
    for delta in builder.flush(until):
        model.apply(delta)


def ids(items: Iterable[str]) -> list[str]:
    return list(items)


def related(model: ItemModel, pid: str) -> tuple[list[str], dict[str, float]]:
    """The neighbours in order, and their true weights (to compare with pytest.approx)."""
    pairs = model.related(pid)
    return [p for p, _ in pairs], dict(pairs)


# -- what gets recommended -------------------------------------------------------------------

def test_co_viewed_items_are_recommended_strongest_first() -> None:
    b, model = ItemStatsBuilder(0), ItemModel()
    for n in range(3):
        covisit(b, n * 10 * MINUTE, "shirt", "belt")
    covisit(b, 40 * MINUTE, "shirt", "tie")
    covisit(b, 50 * MINUTE, "mug", "plate", category="home")
    feed(model, b, HOUR)
    assert ids(rec(model, ["shirt"], k=2)) == ["belt", "tie"]
    assert ids(rec(model, ["mug"], k=1)) == ["plate"]
    names, weights = related(model, "shirt")
    assert names == ["belt", "tie"] and weights == pytest.approx({"belt": 3.0, "tie": 1.0})


def test_co_bought_weighs_more_than_co_viewed() -> None:
    b, model = ItemStatsBuilder(0), ItemModel()
    covisit(b, 0, "shirt", "belt")
    covisit(b, MINUTE * 5, "shirt", "belt")
    b.on_order(MINUTE * 10, [item("shirt"), item("tie")], session_items=[])
    feed(model, b, HOUR)
    names, weights = related(model, "shirt")
    assert names == ["tie", "belt"] and weights == pytest.approx({"tie": 4.0, "belt": 2.0})


def test_cart_and_bought_items_are_never_recommended() -> None:
    b, model = ItemStatsBuilder(0), ItemModel()
    covisit(b, 0, "shirt", "belt", "tie", "scarf")
    b.on_order(10 * MINUTE, [item("socks")], [])
    feed(model, b, HOUR)
    recs = ids(rec(model, ["shirt", "belt"], exclude=["belt", "tie", "socks"], k=10))
    assert recs == ["scarf", "shirt"]  # the viewed seed may come back; excluded ones never
    everything = ["shirt", "belt", "tie", "scarf", "socks"]
    assert ids(rec(model, ["shirt"], exclude=everything[:4], k=3)) == ["socks"]  # trending
    assert ids(rec(model, ["shirt"], exclude=everything, k=3)) == []


_names = st.sampled_from([f"p{i}" for i in range(25)] + ["ghost"])


@settings(max_examples=200, deadline=None)
@given(seeds=st.lists(_names, max_size=12), exclude=st.lists(_names, max_size=25),
       category=st.sampled_from([None, "c0", "c1", "c2", "nope"]), k=st.integers(0, 30))
def test_recommend_never_breaks_its_promises(seeds: list[str], exclude: list[str],
                                             category: str | None, k: int) -> None:
    model = busy_model()
    recs = ids(rec(model, seeds, exclude=exclude, preferred_category=category, k=k))
    assert len(recs) <= k and len(set(recs)) == len(recs)
    assert not set(recs) & set(exclude)
    assert all(p in SHOP.categories for p in recs)
    # short only when nothing else is left to give
    left = {p for p in model.seen if p in SHOP.categories and model.trend_score(p) > 0} \
        - set(exclude)
    assert len(recs) == min(k, len(left | set(recs)))


def test_products_not_in_the_catalog_are_never_recommended() -> None:
    model = ItemModel()
    item("shirt")
    model.apply(ItemDelta(HOUR, 0, {("ghost", "shirt"): 4.0}, {"shirt": 1}, {}, {}))
    assert related(model, "shirt")[0] == ["ghost"]
    assert ids(rec(model, ["shirt"], k=3)) == ["shirt"]  # only via trending


def test_fallback_to_trending_in_the_preferred_category_then_global() -> None:
    b, model = ItemStatsBuilder(0), ItemModel()
    b.on_view(0, item("shirt"), [])
    b.on_add(1, item("belt"))  # adds weigh 2, views 1, purchases 5
    b.on_view(2, item("belt"), [])
    b.on_order(3, [item("mug", "home")], [])
    b.on_view(4, item("plate", "home"), [])
    feed(model, b, HOUR)
    assert model.trend_score("belt") == 3.0 and model.trend_score("mug") == 5.0
    assert ids(rec(model, ["unknown"], preferred_category="apparel", k=3)) == \
        ["belt", "shirt", "mug"]
    assert ids(rec(model, [], exclude=["belt"], preferred_category="apparel", k=4)) == \
        ["shirt", "mug", "plate"]
    assert ids(rec(model, [], k=2)) == ["mug", "belt"]
    assert ids(model.trending(SHOP, "home")) == ["mug", "plate"]


def test_trending_covers_only_the_last_days() -> None:
    b, model = ItemStatsBuilder(0), ItemModel(trending_days=7)
    b.on_order(0, [item("old")], [])
    b.on_view(3 * DAY, item("new"), [])
    feed(model, b, 4 * DAY)
    assert ids(model.trending(SHOP)) == ["old", "new"]
    b.on_view(7 * DAY + HOUR, item("new"), [])  # day 7: day 0 is out of the 7-day window
    feed(model, b, 8 * DAY)
    assert ids(model.trending(SHOP)) == ["new"]
    assert model.trend_score("old") == 0.0


def test_decay_an_old_pair_loses_to_a_recent_one() -> None:
    def run(half_life: int) -> tuple[list[str], list[tuple[str, float]]]:
        b, model = ItemStatsBuilder(0), ItemModel(half_life_ms=half_life)
        for n in range(4):
            covisit(b, n * MINUTE * 5, "shirt", "belt")
        covisit(b, 21 * DAY, "shirt", "tie")
        feed(model, b, 22 * DAY)
        return ids(rec(model, ["shirt"], k=2)), model.related("shirt")

    recs, related = run(7 * DAY)
    assert recs == ["tie", "belt"]
    assert related[1][0] == "belt" and related[1][1] == pytest.approx(4.0 / 8, rel=1e-3)
    recs, _ = run(10_000 * DAY)  # the control: without decay the old, heavier pair wins
    assert recs == ["belt", "tie"]


def test_decay_survives_renormalisation() -> None:
    # A 1-hour half-life renormalises every 64 hours; true weights must not notice.
    b, model = ItemStatsBuilder(0), ItemModel(half_life_ms=HOUR, min_weight=0.0,
                                             forget_after_ms=400 * DAY)
    covisit(b, 0, "shirt", "belt")
    for day in range(1, 12):  # keep both products seen, add a fresh pair every day
        covisit(b, day * DAY, "shirt", "tie")
        b.on_view(day * DAY + 2 * MINUTE, item("belt"), [])
    feed(model, b, 12 * DAY)
    assert model.shift > 0
    weights = dict(model.related("shirt"))
    at = model.at or 0
    assert weights["belt"] == pytest.approx(2.0 ** (-(at - HOUR) / HOUR), rel=1e-9)


def test_neighbour_pruning_keeps_the_heaviest_ties_by_id() -> None:
    b = ItemStatsBuilder(0, bucket_ms=DAY, session_window=100)
    model = ItemModel(neighbours=5)
    others = [f"p{i:02d}" for i in range(30)]
    for i, p in enumerate(others):  # p00..p09 get 3 co-views with hub, p10.. get 1 or 2
        for n in range(3 if i < 10 else 1 + i % 2):
            covisit(b, (i * 3 + n) * MINUTE, "hub", p)
    feed(model, b, DAY)
    names, weights = related(model, "hub")
    assert names == others[:5] and weights == pytest.approx(dict.fromkeys(others[:5], 3.0))
    model.apply(ItemDelta(2 * DAY, 0, {}, {}, {}, {}))  # folds the first day
    assert model.rows and all(len(row) <= 5 for row in model.rows.values())
    assert related(model, "hub")[0] == others[:5]
    assert related(model, "p29")[0] == ["hub"]


def test_forgotten_products_free_their_memory() -> None:
    b, model = ItemStatsBuilder(0), ItemModel(forget_after_ms=10 * DAY)
    covisit(b, 0, "shirt", "belt")
    for day in range(1, 15):
        b.on_view(day * DAY, item("shirt"), [])
    feed(model, b, 15 * DAY)
    assert "belt" not in model.seen and "shirt" in model.seen
    assert model.related("shirt") == []
    assert model.size() == {"products": 1, "pairs": 0, "pending": 0}


def test_deltas_out_of_order_are_refused() -> None:
    model = ItemModel()
    model.apply(ItemDelta(2 * HOUR, 1, {}, {}, {}, {}))
    for end, shard in ((2 * HOUR, 1), (2 * HOUR, 0), (HOUR, 3)):
        with pytest.raises(ValueError):
            model.apply(ItemDelta(end, shard, {}, {}, {}, {}))
    model.apply(ItemDelta(2 * HOUR, 2, {}, {}, {}, {}))


# -- the builder -----------------------------------------------------------------------------

def test_builder_buckets_are_half_open_and_flushed_in_order() -> None:
    b = ItemStatsBuilder(3, bucket_ms=HOUR)
    b.on_view(HOUR - 1, item("a"), [])
    b.on_view(HOUR, item("b"), ["a"])  # exactly on the boundary: the next bucket
    b.on_view(3 * HOUR + 5, item("c"), [])
    assert b.flush(HOUR - 1) == []
    [first] = b.flush(HOUR)
    assert (first.bucket_end, first.shard, first.views, first.pairs) == (HOUR, 3, {"a": 1}, {})
    assert b.flush(2 * HOUR - 1) == []
    [second] = b.flush(3 * HOUR)
    assert (second.bucket_end, second.views, second.pairs) == \
        (2 * HOUR, {"b": 1}, {("a", "b"): 1.0})
    assert [d.bucket_end for d in b.flush(10 * HOUR)] == [4 * HOUR]
    assert b.flush(20 * HOUR) == []


def test_builder_refuses_events_older_than_its_buckets() -> None:
    b = ItemStatsBuilder(0)
    b.on_view(2 * HOUR, item("a"), [])
    with pytest.raises(ValueError):
        b.on_view(HOUR, item("b"), [])
    b.flush(3 * HOUR)
    with pytest.raises(ValueError):
        b.on_add(3 * HOUR - 1, item("b"))
    b.on_add(3 * HOUR, item("b"))


def test_builder_pairs_session_and_order() -> None:
    b = ItemStatsBuilder(0, session_window=2, order_window=3)
    b.on_view(0, item("d"), ["a", "b", "d", "c", "b"])  # the 2 latest distinct others: b, c
    b.on_order(1, [Product("x", "X", 1.0, 2, "c", "", ""), item("y"), item("x")], ["b", "x"])
    [d] = b.flush(HOUR)
    assert d.pairs == {("b", "d"): 1.0, ("c", "d"): 1.0, ("x", "y"): 4.0, ("b", "x"): 2.0,
                       ("b", "y"): 2.0}
    assert d.purchases == {"x": 1, "y": 1}
    # ids and counts only: what an event says a product is never reaches the shared model
    assert [f for f in ItemDelta.__dataclass_fields__] == \
        ["bucket_end", "shard", "pairs", "views", "adds", "purchases"]


def test_builder_snapshot_mid_bucket_changes_nothing() -> None:
    def events(b: ItemStatsBuilder, part: int) -> None:
        base = part * 90 * MINUTE
        covisit(b, base, f"a{part}", f"b{part}", "c")
        b.on_order(base + 10 * MINUTE, [item("c"), item(f"a{part}")], [f"b{part}"])

    plain, snapped = ItemStatsBuilder(1), ItemStatsBuilder(1)
    events(plain, 0)
    events(snapped, 0)
    restored = ItemStatsBuilder(1, resume=pickle.loads(pickle.dumps(snapped.snapshot())))
    for part in (1, 2):
        events(plain, part)
        events(restored, part)
    assert plain.flush(DAY) == restored.flush(DAY)
    with pytest.raises(ValueError):
        ItemStatsBuilder(1, bucket_ms=DAY, resume=snapped.snapshot())


def test_delta_pickles_compactly_and_exactly() -> None:
    b = ItemStatsBuilder(0)
    for n in range(50):
        covisit(b, n * MINUTE, f"p{n % 7}", f"p{(n * 3) % 11}", f"p{n % 5}")
    b.on_order(55 * MINUTE, [Product("p1", "Ünï €", 0.1 + 0.2, 1, "c", "", "")], ["p2"])
    [d] = b.flush(HOUR)
    data = pickle.dumps(d, protocol=pickle.HIGHEST_PROTOCOL)
    assert pickle.loads(data) == d  # floats (0.1 + 0.2) and text exactly
    assert ItemDelta.from_data(d.to_data()) == d
    assert len(data) * 2 < len(pickle.dumps(d.to_data(), protocol=pickle.HIGHEST_PROTOCOL))


# -- determinism -----------------------------------------------------------------------------

def busy_builder(seed: int) -> ItemStatsBuilder:
    b = ItemStatsBuilder(0)
    for n in range(400):
        ts = n * 7 * MINUTE
        p = [f"p{(seed + n * k) % 23}" for k in (1, 3, 5)]
        covisit(b, ts, *p, category=f"c{n % 3}")
        if n % 4 == 0:
            b.on_add(ts + 4 * MINUTE, item(p[0], f"c{n % 3}"))
        if n % 9 == 0:
            b.on_order(ts + 5 * MINUTE, [item(p[1]), item(p[2])], p)
    return b


_BUSY: list[ItemModel] = []


def busy_model() -> ItemModel:
    if not _BUSY:
        model = ItemModel(neighbours=4, trending_days=1)
        deltas = busy_builder(4).flush(10 * DAY)
        # a product with pairs and counts but not in the catalog: never to be recommended
        deltas.append(ItemDelta(deltas[-1].bucket_end, 1, {("ghost", "p1"): 1024.0},
                                {"ghost": 3}, {}, {}))
        for d in deltas:
            model.apply(d)
        assert model.related("p1")[0][0] == "ghost" and model.trend_score("ghost") > 0
        _BUSY.append(model)
    return _BUSY[0]


QUERIES = [([f"p{i}", f"p{(i * 5) % 23}"], [f"p{(i + 1) % 23}"], f"c{i % 3}") for i in range(23)]


def answers(model: ItemModel) -> list[list[str]]:
    return [ids(rec(model, s, exclude=e, preferred_category=c, k=5))
            for s, e, c in QUERIES]


def test_same_calls_same_answers_and_snapshot_round_trip() -> None:
    deltas = busy_builder(1).flush(10 * DAY)
    assert len(deltas) > 40
    a, b = ItemModel(half_life_ms=DAY, neighbours=4), ItemModel(half_life_ms=DAY, neighbours=4)
    for i, d in enumerate(deltas):
        a.apply(d)
        b.apply(d)
        if i % 10 == 5:  # restore from a snapshot mid-way, pending pairs included
            snap = pickle.loads(pickle.dumps(b.snapshot()))
            b = ItemModel(half_life_ms=DAY, neighbours=4, resume=snap)
            assert answers(b) == answers(a)
            assert b.snapshot() == a.snapshot()
    assert answers(a) == answers(b)
    assert any(answers(a))


def test_pending_deltas_read_as_if_folded() -> None:
    # recommend() between deltas of one bucket_end reads the pending sums through the fold:
    # folding them (a later bucket_end arrives) must change no answer and no neighbour list.
    model = ItemModel(half_life_ms=DAY, neighbours=4)
    for d in busy_builder(3).flush(10 * DAY):
        model.apply(d)
        before = answers(model), [related(model, p)[0] for p in model.seen]
        assert model.pending
        model.apply(ItemDelta(d.bucket_end + 1, 0, {}, {}, {}, {}))  # folds, same hour
        assert not model.pending
        assert (answers(model), [related(model, p)[0] for p in model.seen]) == before


def test_sealing_folds_exactly_as_the_next_bucket_would() -> None:
    # decide seals once every shard passed a time: the same weights, bit for bit, as
    # folding when the next bucket arrives; a delta for a sealed bucket is refused.
    sealed, lazy = ItemModel(half_life_ms=DAY, neighbours=4), ItemModel(half_life_ms=DAY,
                                                                        neighbours=4)
    for d in busy_builder(3).flush(10 * DAY):
        sealed.apply(d)
        lazy.apply(d)
        sealed.seal(d.bucket_end)
        assert not sealed.pending
        assert answers(sealed) == answers(lazy)
    assert lazy.pending and lazy.at is not None
    lazy.apply(ItemDelta(lazy.at + 1, 0, {}, {}, {}, {}))  # the next bucket folds it
    assert sealed.rows == lazy.rows  # every weight, bit for bit
    with pytest.raises(ValueError, match="sealed"):
        sealed.apply(ItemDelta(sealed.sealed, 0, {}, {}, {}, {}))


def test_restore_with_another_half_life_keeps_true_weights() -> None:
    model = ItemModel(half_life_ms=DAY)
    for d in busy_builder(2).flush(10 * DAY):
        model.apply(d)
    other = ItemModel(half_life_ms=3 * DAY, resume=model.snapshot())
    for p in ("p1", "p3", "p4"):  # (p2 is only ever viewed with itself with this seed)
        names, weights = related(model, p)
        assert names and related(other, p)[0] == names
        assert related(other, p)[1] == pytest.approx(weights, rel=1e-12)


# -- the split of customers into shards ------------------------------------------------------

PRODUCTS = [f"p{i}" for i in range(8)]
Step = tuple[int, int, int, int, int]  # day, minute, customer, kind (0 view, 1 add, 2 order),
#                                        product
# Busy hours on three days: several shards' deltas per bucket, decay, pruning and forgetting.
steps = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 179), st.integers(0, 5),
                           st.integers(0, 2), st.integers(0, 7)), min_size=20, max_size=150)


def info_of(i: int) -> Item:
    return item(PRODUCTS[i % 8], f"c{i % 8 % 3}")


def run_shards(events: list[Step], shard_of: list[int], flush_every: int) -> list[ItemDelta]:
    shards = max(shard_of) + 1
    builders = [ItemStatsBuilder(s) for s in range(shards)]
    sessions: dict[int, list[str]] = {}
    out: list[ItemDelta] = []
    for n, (day, minute, customer, kind, product) in enumerate(sorted(events)):
        b = builders[shard_of[customer]]
        ts, info = day * DAY + minute * MINUTE, info_of(product)
        session = sessions.setdefault(customer, [])
        if kind == 0:
            b.on_view(ts, info, list(session))
            session.append(info.product_id)
        elif kind == 1:
            b.on_add(ts, info)
        else:
            b.on_order(ts, [info, info_of(product + 1)], list(session))
        if n % flush_every == 0:  # a watermark passing: flushing early changes nothing
            for other in builders:
                out.extend(other.flush(ts))
    for b in builders:
        out.extend(b.flush(10 * DAY))
    return sorted(out, key=ItemDelta.sort_key)


def model_states(deltas: list[ItemDelta]) -> list[tuple[object, ...]]:
    """After every bucket_end, the answers to a few queries and the state minus last_shard."""
    model = ItemModel(half_life_ms=6 * HOUR, neighbours=3, trending_days=1,
                      forget_after_ms=DAY, min_weight=0.3)
    out = []
    for i, d in enumerate(deltas):
        model.apply(d)
        if i + 1 == len(deltas) or deltas[i + 1].bucket_end != d.bucket_end:
            recs = [ids(rec(model, [p, PRODUCTS[(j + 3) % 8]], exclude=[PRODUCTS[j - 1]],
                                        preferred_category="c1", k=3))
                    for j, p in enumerate(PRODUCTS)]
            snap = model.snapshot()
            del snap["last_shard"]
            out.append((d.bucket_end, recs, snap))
    return out


@settings(max_examples=150, deadline=None)
@given(events=steps, shard_of=st.lists(st.integers(0, 3), min_size=6, max_size=6),
       flush_every=st.integers(1, 50))
def test_the_split_into_shards_does_not_matter(events: list[Step], shard_of: list[int],
                                               flush_every: int) -> None:
    whole = model_states(run_shards(events, [0] * 6, 1000))
    split = model_states(run_shards(events, shard_of, flush_every))
    assert split == whole
