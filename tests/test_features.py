"""Customer features from the facts of events: windows, recency, lifecycle, order rhythm,
engagement ranks. Pure functions of the record at an event time."""

from __future__ import annotations

import pytest

from nudge.core.config import EventsConfig
from nudge.core.journeyconfig import FeaturesConfig
from nudge.core.timefmt import DAY, HOUR, parse_iso
from nudge.flows.contract import Limits, parse_record
from nudge.state import engagement
from nudge.state.customer import Customer, apply_facts, decode, encode
from nudge.state.features import FEATURES, Context, Env, model_inputs, preferred_categories
from nudge.state.parts import JourneyState
from tests.events import T0, order, track, view

LIMITS = Limits.from_config(EventsConfig(), now_ms=1_900_000_000_000)
BASE = parse_iso(T0)


def customer(*records: bytes) -> Customer:
    c = Customer()
    for raw in records:
        apply_facts(c, parse_record(raw, LIMITS))
    return c


def at(c: Customer, minutes: float) -> Context:
    return Context(c, BASE + int(minutes * 60_000), Env())


def test_views_per_category_and_windows() -> None:
    c = customer(view("u", 0, category="shoes"), view("u", 10, category="shoes"),
                 view("u", 20, category="books"), view("u", 3 * 24 * 60, category="shoes"))
    ctx = at(c, 3 * 24 * 60 + 1)
    assert ctx["views_1d"] == 1 and ctx["views_7d"] == 4 and ctx["max_category_views_7d"] == 3
    assert ctx["views_30d"] == 4
    assert at(c, 9 * 24 * 60)["views_7d"] == 1  # the first three left the 7-day window
    assert preferred_categories(ctx) == ["shoes", "books"]


def test_window_features_say_when_time_alone_changes_them() -> None:
    c = customer(view("u", 0, category="shoes"))
    ctx = at(c, 60)
    # the view's day bucket leaves the 7-day window 7 days after its day began
    assert FEATURES["views_7d"].changes(ctx) == (BASE // DAY + 7) * DAY
    assert FEATURES["views_1d"].changes(ctx) == (BASE // HOUR + 24) * HOUR
    assert FEATURES["cart_value"].changes(ctx) is None


def test_orders_spend_aov_and_order_rhythm() -> None:
    c = customer(order("u", 0, revenue=40.0), order("u", 10 * 24 * 60, revenue=60.0))
    ctx = at(c, 12 * 24 * 60)
    assert (ctx["orders_total"], ctx["spend_total"], ctx["aov"]) == (2, 100.0, 50.0)
    assert (ctx["orders_30d"], ctx["spend_30d"], ctx["orders_7d"]) == (2, 100.0, 1)
    assert ctx["days_since_last_order"] == 2
    # usual gap 10 days: the next order is expected in 8 days; overdue ratio 0.2
    assert ctx["expected_days_to_next_order"] == 8.0
    assert ctx["overdue_ratio"] == 0.2
    late = at(c, 40 * 24 * 60)
    assert late["expected_days_to_next_order"] == -20.0 and late["overdue_ratio"] == 3.0


@pytest.mark.parametrize(("orders", "days_after_first", "days_after_last", "expected"), [
    (0, 5, None, "new"), (0, 45, None, "prospect"), (1, 10, 10, "new"),
    (2, 100, 20, "active"), (2, 200, 100, "lapsed"), (2, 400, 181, "churned"),
])
def test_lifecycle(orders: int, days_after_first: int, days_after_last: int | None,
                   expected: str) -> None:
    c = Customer()
    now = 1000 * DAY
    c.first_seen = now - days_after_first * DAY
    if orders:
        c.orders, c.first_order = orders, now - days_after_first * DAY
        c.last_order = now - (days_after_last or 0) * DAY
    assert Context(c, now, Env())["lifecycle"] == expected


def test_lifecycle_changes_at_its_thresholds_without_events() -> None:
    c = Customer()
    c.orders, c.first_order, c.last_order, c.first_seen = 2, 100 * DAY, 200 * DAY, 100 * DAY
    ctx = Context(c, 250 * DAY, Env())
    assert ctx["lifecycle"] == "active"
    assert FEATURES["lifecycle"].changes(ctx) == 290 * DAY  # lapsed_days = 90


def test_email_engagement_counts() -> None:
    c = customer(track("Email Opened", "u", 0), track("Email Opened", "u", 5),
                 track("Email Link Clicked", "u", 6))
    ctx = at(c, 10)
    assert (ctx["email_opens_30d"], ctx["email_clicks_30d"]) == (2, 1)


def test_engagement_ranks_are_time_independent() -> None:
    half_life = 30 * DAY
    # a: one action long ago; b: a smaller action later; the later one wins in time
    a = engagement.add(None, 5.0, 0, half_life)
    b = engagement.add(None, 1.0, 90 * DAY, half_life)
    assert engagement.score_at(a, 90 * DAY, half_life) < engagement.score_at(b, 90 * DAY,
                                                                             half_life)
    assert a is not None and b is not None and a < b  # the same order, at every instant
    ranks = engagement.EngagementRanks([a, b])
    assert ranks.percentile(b, population=4) == (2 + 1 + 0.5) / 4  # 2 never engaged
    assert ranks.percentile(None, population=4) == 0.25
    ranks.replace(b, None)
    assert list(ranks.keys) == [a]


def test_lazy_ranks_give_the_eager_ones_keys_and_percentiles() -> None:
    """Customers' keys moving up (and a few leaving), with percentiles asked now and then:
    the lazy ranks, synced only when asked, answer as the eager ones at every question."""
    import random

    rng = random.Random(7)
    eager, lazy = engagement.EngagementRanks(), engagement.EngagementRanks(lazy=True)
    keys: dict[int, float | None] = {}
    for step in range(5000):
        who = rng.randrange(300)
        old = keys.get(who)
        new = None if rng.random() < 0.05 else engagement.add(old, rng.choice([1.0, 2.0]),
                                                              step * 1000, 30 * DAY)
        keys[who] = new
        eager.replace(old, new)
        lazy.replace(old, new)
        if step % 97 == 0:
            probe = keys.get(rng.randrange(300))
            assert lazy.percentile(probe, 400) == eager.percentile(probe, 400)
    assert list(lazy.snapshot()) == list(eager.snapshot()) == sorted(
        k for k in keys.values() if k is not None)


def test_engagement_tier_uses_the_population() -> None:
    cfg = FeaturesConfig()
    c = Customer()
    c.engagement = 10.0
    env = Env(cfg, lambda cust: 0.9)
    assert Context(c, 0, env)["engagement_tier"] == "top"
    assert Context(c, 0, Env(cfg, lambda cust: 0.5))["engagement_tier"] == "middle"
    assert Context(c, 0, Env(cfg, lambda cust: 0.1))["engagement_tier"] == "bottom"


def test_model_inputs_are_bounded_numbers() -> None:
    c = customer(*[view("u", i) for i in range(500)])
    x = model_inputs(at(c, 600))
    assert all(isinstance(v, float) for v in x.values())
    assert x["views_7d"] == 200.0 and x["days_since_last_order"] == 365.0


def test_record_round_trips_through_its_encoding() -> None:
    c = customer(view("u", 0), order("u", 5), track("Email Opened", "u", 6))
    c.segments = ["vip"]
    c.journeys = {"cart_abandonment": JourneyState(5, False, 0, 1, 1, 5, 7, 1, False)}
    back = decode(encode(c))
    assert encode(back) == encode(c)
    assert back.recent == ["sku-1"] and back.bought == ["sku-1"] and back.orders == 1


def test_the_encoding_keeps_every_field() -> None:
    # The compiled record (nudge/tools/native.py) lists its fields in __mypyc_attrs__ and checks
    # their types, so each field gets the first distinct value its type accepts.
    names = getattr(Customer, "__slots__", None) or Customer.__mypyc_attrs__  # type: ignore[attr-defined]
    c = Customer()
    expected = []
    for i, name in enumerate(names):
        for value in (f"value-{i}", 1000 + i, 1000.5 + i, [f"value-{i}"], {f"value-{i}": i}, True):
            try:
                setattr(c, name, value)  # distinct values catch a field out of place
            except TypeError:
                continue
            expected.append(value)
            break
    assert len(expected) == len(names)
    back = decode(encode(c))
    assert [getattr(back, n) for n in names] == expected
