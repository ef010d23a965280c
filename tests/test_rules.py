"""Segment rules: the seed articles' segments are expressible and right; bad rules fail at
start-up naming the segment and the reason; a rule knows when time alone may flip it."""

from __future__ import annotations

import pytest

from nudge.core.config import load_text
from nudge.core.errors import ConfigError
from nudge.core.timefmt import DAY
from nudge.state.customer import Customer
from nudge.state.features import Context, Env
from nudge.state.program import compile_program
from nudge.state.rules import compile_rule
from nudge.state.segments import evaluate

SEEDS = """
[segments.browse_intent]
rule = "max_category_views_7d > 3 and orders_7d == 0"
[segments.vip]
rule = "orders_30d > 5 and spend_30d > 500"
[segments.lapsed]
rule = "orders_total > 0 and days_since_last_order >= 90"
[segments.loyal]
rule = "orders_180d >= 3 and days_since_last_order <= 30"
[segments.engaged_top]
rule = "engagement_tier == 'top'"
[segments.engaged_middle]
rule = "engagement_tier == 'middle'"
[segments.engaged_bottom]
rule = "engagement_tier == 'bottom'"
"""
NOW = 1000 * DAY


def _orders(c: Customer, days_ago: list[int], revenue: float) -> None:
    from nudge.state.customer import ORDERS, SPEND

    for d in sorted(days_ago, reverse=True):
        t = NOW - d * DAY
        c.orders += 1
        c.spend += revenue
        c.first_order = c.first_order or t
        c.last_order = t
        for key, amount in ((ORDERS, 1), (SPEND, revenue)):
            series = c.counters.setdefault(key, [])
            if series and series[-2] == t // DAY:
                series[-1] += amount
            else:
                series.extend([t // DAY, amount])


def _views(c: Customer, category: str, n: int, days_ago: int = 1) -> None:
    c.counters["v:" + category] = [(NOW - days_ago * DAY) // DAY, n]


def segments_of(c: Customer, percentile: float = 0.5) -> list[str]:
    program = compile_program(load_text(SEEDS))
    evaluate(c, "c", Context(c, NOW, Env(program.features, lambda _: percentile)), program)
    return c.segments


def test_browse_intent() -> None:
    c = Customer()
    _views(c, "shoes", 4)
    assert "browse_intent" in segments_of(c)
    _orders(c, [2], 30.0)
    assert "browse_intent" not in segments_of(c)
    c2 = Customer()
    _views(c2, "shoes", 3)  # 3 is not more than 3
    assert "browse_intent" not in segments_of(c2)


def test_vip_needs_both_count_and_spend() -> None:
    c = Customer()
    _orders(c, [1, 3, 5, 7, 9, 11], 100.0)
    assert "vip" in segments_of(c)
    c2 = Customer()
    _orders(c2, [1, 3, 5, 7, 9, 11], 50.0)  # spend 300
    assert "vip" not in segments_of(c2)


def test_lapsed_and_loyal() -> None:
    c = Customer()
    _orders(c, [120, 95], 20.0)
    assert segments_of(c) == ["engaged_middle", "lapsed"]
    c2 = Customer()
    _orders(c2, [150, 60, 10], 20.0)
    assert "loyal" in segments_of(c2) and "lapsed" not in segments_of(c2)


@pytest.mark.parametrize(("percentile", "tier"), [(0.9, "engaged_top"), (0.75, "engaged_top"),
                                                  (0.5, "engaged_middle"),
                                                  (0.1, "engaged_bottom")])
def test_engagement_tiers(percentile: float, tier: str) -> None:
    assert tier in segments_of(Customer(), percentile)


def test_membership_changes_are_reported_with_their_instant() -> None:
    program = compile_program(load_text(SEEDS))
    c = Customer()
    _orders(c, [91], 20.0)
    changes, _ = evaluate(c, "c9", Context(c, NOW, Env(program.features)), program)
    assert sorted((x.segment, x.change, x.at) for x in changes) == [
        ("engaged_middle", "entered", NOW), ("lapsed", "entered", NOW)]
    _orders(c, [0], 20.0)
    changes, _ = evaluate(c, "c9", Context(c, NOW + 1, Env(program.features)), program)
    assert [(x.segment, x.change) for x in changes] == [("lapsed", "exited")]


def test_lapsed_is_reevaluated_exactly_when_90_days_pass() -> None:
    rule = compile_rule("orders_total > 0 and days_since_last_order >= 90", "segments.lapsed")
    c = Customer()
    _orders(c, [10], 20.0)
    ctx = Context(c, NOW, Env())
    assert not rule.test(ctx)
    assert rule.next_change(ctx) == c.last_order + 90 * DAY  # not tomorrow, not daily
    later = Context(c, c.last_order + 90 * DAY, Env())
    assert rule.test(later)
    assert rule.next_change(later) is None  # only an order can end it now


def test_strict_comparisons_flip_at_the_next_whole_day() -> None:
    rule = compile_rule("days_since_last_order > 89", "r")
    c = Customer()
    _orders(c, [10], 20.0)
    assert rule.next_change(Context(c, NOW, Env())) == c.last_order + 90 * DAY


def test_window_rule_is_reevaluated_when_its_counted_buckets_expire() -> None:
    rule = compile_rule("views_7d('shoes') > 3", "r")
    c = Customer()
    _views(c, "shoes", 5, days_ago=2)
    ctx = Context(c, NOW, Env())
    assert rule.test(ctx)
    assert rule.next_change(ctx) == (NOW // DAY - 2 + 7) * DAY


def test_missing_values_compare_false_except_equality() -> None:
    c = Customer()  # never ordered: days_since_last_order is none
    ctx = Context(c, NOW, Env())
    assert not compile_rule("days_since_last_order < 5", "r").test(ctx)
    assert not compile_rule("days_since_last_order >= 5", "r").test(ctx)
    assert compile_rule("days_since_last_order == none", "r").test(ctx)
    assert compile_rule("not (days_since_last_order > 1)", "r").test(ctx)
    assert compile_rule("lifecycle in ['new', 'prospect']", "r").test(ctx)
    assert not compile_rule("preferred_category < 3", "r").test(ctx)  # no TypeError


@pytest.mark.parametrize(("rule", "message"), [
    ("ordrs_30d > 1", "unknown name 'ordrs_30d' (did you mean 'orders_30d'?)"),
    ("__import__('os').system('x')", "functions, min, max and abs may be called"),
    ("customer.__class__", "only event.<field> may use a dot"),
    ("orders_30d ** 2 > 1", "operator Pow is not allowed"),
    ("[x for x in y]", "listcomp is not allowed"),
    ("views_7d(shoes) > 1", "views_7d() takes one category name in quotes"),
    ("orders_30d >", "not a valid rule"),
    ("event.email", "only allowed in trigger conditions"),
    ("lambda: 1", "lambda is not allowed"),
    ("a" * 10 + " > 1", "unknown name"),
])
def test_bad_rules_fail_at_startup_naming_the_segment(rule: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        compile_program(load_text(f'[segments.vip]\nrule = "{rule}"'))
    assert info.value.path == "segments.vip.rule"
    assert message in info.value.reason


def test_trigger_conditions_see_the_event() -> None:
    program = compile_program(load_text('[triggers.welcome]\nenabled = true'))
    welcome = next(j for j in program.journeys if j.name == "welcome")
    assert welcome.where is not None and "event" not in welcome.where.features
