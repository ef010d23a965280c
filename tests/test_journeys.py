"""The journeys Nudge ships, defined in config, through parse -> shards -> decide: browse
abandonment, post-purchase, win-back (segment entry), welcome; re-entry policies, holdouts,
experiments, incentives and attribution outcomes."""

from __future__ import annotations

import collections

from nudge.core.config import Config, load_text
from nudge.core.timefmt import MINUTE, parse_iso
from tests.events import T0, add, identify, order, track, view
from tests.harness import Pipeline

BASE = parse_iso(T0)
D = 24 * 60  # minutes in a day


def config(toml: str, shards: int = 4) -> Config:
    return load_text(f"shards = {shards}\n[caps]\nmax_emails = 10\nwindow = '1h'\n" + toml)


def run(records: list[bytes], cfg: Config) -> Pipeline:
    p = Pipeline(cfg)
    p.feed(records)
    p.end()
    return p


def decisions(p: Pipeline, trigger: str | None = None) -> list[tuple]:
    return [(d.customer_id, d.trigger, d.episode, d.stage, (d.due - BASE) // MINUTE, d.outcome,
             d.reason) for d in p.decisions if trigger is None or d.trigger == trigger]


BROWSE = config("[triggers.cart_abandonment]\nenabled = false\n"
                "[triggers.browse_abandonment]\nenabled = true\n")


def test_browse_abandonment_after_three_views_without_a_cart() -> None:
    p = run([identify("u", 0), view("u", 1), view("u", 2, pid="sku-2"), view("u", 5),
             view("z", 600)], BROWSE)
    assert decisions(p) == [("u", "browse_abandonment", 1, 1, 125, "sent", None)]
    email_ctx = p.decisions[0].context
    assert email_ctx is not None and email_ctx.recent[:2] == ("sku-1", "sku-2")


def test_browse_abandonment_not_sent_after_a_cart_add_or_with_two_views() -> None:
    assert decisions(run([identify("u", 0), view("u", 1), view("u", 2), view("u", 3),
                          add("u", 10), view("z", 600)], BROWSE)) == []
    p = run([identify("u", 0), view("u", 1), view("u", 2), view("z", 600)], BROWSE)
    assert decisions(p) == []  # never armed: closed quietly when the delay passed
    assert p.decisions == []


def test_browse_cooldown_keeps_a_second_episode_away_for_7_days() -> None:
    records = [identify("u", 0)]
    for day in (0, 1, 9):
        records += [view("u", day * D + 1), view("u", day * D + 2), view("u", day * D + 3)]
    records.append(view("z", 12 * D))
    assert [(x[2], x[4]) for x in decisions(run(records, BROWSE))] == [
        (1, 123), (2, 9 * D + 123)]


POST = config("[triggers.cart_abandonment]\nenabled = false\n"
              "[triggers.post_purchase]\nenabled = true\n")


def test_post_purchase_cross_sell_seven_days_after_the_order() -> None:
    p = run([identify("u", 0), order("u", 10), order("u", 3 * D), view("z", 20 * D)], POST)
    assert decisions(p) == [("u", "post_purchase", 1, 1, 10 + 7 * D, "sent", None)]
    ctx = p.decisions[0].context
    assert ctx is not None and ctx.bought == ("sku-1",)


WIN_BACK = config("[triggers.cart_abandonment]\nenabled = false\n"
                  "[triggers.win_back]\nenabled = true\n"
                  "[segments.lapsed]\nrule = 'orders_total > 0 and days_since_last_order >= 90'\n")


def test_win_back_when_time_alone_makes_a_customer_lapsed() -> None:
    # nothing happens to "u" after the order: the segment is entered at exactly +90 days
    p = run([identify("u", 0), order("u", 10), view("z", 120 * D)], WIN_BACK)
    assert [(s.customer_id, s.segment, s.change, (s.at - BASE) // MINUTE)
            for s in p.segments] == [("u", "lapsed", "entered", 10 + 90 * D)]
    assert decisions(p) == [("u", "win_back", 1, 1, 10 + 90 * D, "sent", None),
                            ("u", "win_back", 1, 2, 10 + 104 * D, "sent", None)]


def test_win_back_stops_when_the_customer_orders_and_leaves_the_segment() -> None:
    p = run([identify("u", 0), order("u", 10), order("u", 95 * D), view("z", 120 * D)],
            WIN_BACK)
    assert decisions(p) == [("u", "win_back", 1, 1, 10 + 90 * D, "sent", None)]
    assert [(s.change, (s.at - BASE) // MINUTE) for s in p.segments] == [
        ("entered", 10 + 90 * D), ("exited", 95 * D + 30)]  # evaluated 30 minutes after


WELCOME = config("[triggers.cart_abandonment]\nenabled = false\n"
                 "[triggers.welcome]\nenabled = true\n")


def test_welcome_series_on_the_first_identify_with_an_email() -> None:
    p = run([identify("u", 0, email=None), identify("u", 5), identify("u", 8 * D),
             view("z", 20 * D)], WELCOME)
    assert decisions(p) == [("u", "welcome", 1, 1, 5, "sent", None),
                            ("u", "welcome", 1, 2, 5 + 2 * D, "sent", None),
                            ("u", "welcome", 1, 3, 5 + 7 * D, "sent", None)]


def test_welcome_without_consent_is_suppressed_and_never_repeats() -> None:
    p = run([identify("u", 0, consent=False), identify("u", 9 * D), view("z", 20 * D)], WELCOME)
    assert [x[6] for x in decisions(p)] == ["no_consent"] * 3  # reentry = "once"


def test_frequency_cap_spans_journeys() -> None:
    cfg = load_text("shards = 4\n[triggers.welcome]\nenabled = true\n")  # 1 email per 24h
    p = run([identify("u", 0), add("u", 1), view("z", 3 * D)], cfg)
    assert [(x[1], x[5], x[6]) for x in decisions(p)] == [
        ("welcome", "sent", None), ("cart_abandonment", "suppressed", "frequency_cap"),
        ("welcome", "sent", None)]


def _shoppers(n: int) -> list[bytes]:
    records = []
    for i in range(n):
        records += [identify(f"c{i}", i * 0.01), add(f"c{i}", i * 0.01 + 1)]
    return [*records, view("z", 2 * D)]


def test_holdout_share_gets_nothing_and_the_same_customers_every_time() -> None:
    cfg = config("[triggers.cart_abandonment]\nholdout = 0.3\n")
    p = run(_shoppers(400), cfg)
    outcomes = collections.Counter(d.outcome for d in p.decisions)
    assert 80 < outcomes["holdout"] < 160 and outcomes["holdout"] + outcomes["sent"] == 400
    assert all(d.context is None for d in p.decisions if d.outcome == "holdout")
    again = run(_shoppers(400), cfg)
    assert [d.outcome for d in again.decisions] == [d.outcome for d in p.decisions]


def test_variants_split_by_weight_and_are_logged() -> None:
    cfg = config("""[triggers.cart_abandonment]
stages = [{ delay = "1h", variants = [
  { name = "control", weight = 3 },
  { name = "urgency", weight = 1, subject = "Hurry, {{ customer.first_name }}" },
] }]
""")
    p = run(_shoppers(800), cfg)
    split = collections.Counter(d.variant for d in p.decisions)
    assert 520 < split["control"] < 680 and split["control"] + split["urgency"] == 800
    urgent = next(d for d in p.decisions if d.variant == "urgency")
    assert urgent.subject.startswith("Hurry") and urgent.template == "cart_abandonment"
    from nudge.flows.sinks import decision_json

    assert decision_json(urgent)["variant"] == "urgency"


def test_incentive_only_for_low_propensity_customers() -> None:
    low = config("[model]\nincentive_if = 'propensity < 0.9'\n")
    high = config("[model]\nincentive_if = 'propensity < 0.05'\n")
    records = [identify("u", 0), add("u", 1), view("z", 300)]
    # before any learning every score is the prior, 0.1
    assert run(records, low).decisions[0].incentive is not None
    assert run(records, high).decisions[0].incentive is None


def test_attribution_outcomes_for_sent_and_holdout_decisions() -> None:
    cfg = config("[model]\nattribution_window = '2d'\n")
    p = run([identify("a", 0), identify("b", 0), add("a", 1), add("b", 1),
             order("a", 120, revenue=50.0), view("z", 5 * D)], cfg)
    got = sorted((o.customer_id, o.outcome, (o.at - BASE) // MINUTE, o.revenue)
                 for o in p.outcomes)
    assert got == [("a", "converted", 120, 50.0), ("b", "not_converted", 61 + 2 * D, 0.0)]


def test_config_errors_name_the_trigger() -> None:
    import pytest

    from nudge.core.errors import ConfigError

    for text, path in [
        ("[triggers.cart_abandonment]\nentry = 'Product Teleported'",
         "triggers.cart_abandonment.entry"),
        ("[triggers.x]\nentry = 'Product Added'\nstages = ['1h', '30m']", "triggers.x.stages"),
        ("[triggers.x]\nentry = 'Product Added'\nstages = ['1h']\nreentry = 'cooldown'",
         "triggers.x.cooldown"),
        ("[triggers.welcome]\nenabled = true\nwhere = 'event.emial'", "triggers.welcome.where"),
        ("[triggers.x]\nentry = 'Product Added'\nstages = [{ delay = '1h', variants = "
         "[{ name = 'a', weight = 0 }] }]", "triggers.x.stages[0].variants[0].weight"),
    ]:
        with pytest.raises(ConfigError) as info:
            Pipeline(load_text(text))
        assert info.value.path == path, text


def test_a_custom_journey_from_config_alone() -> None:
    cfg = config("""[triggers.cart_abandonment]
enabled = false
[triggers.checkout_rescue]
enabled = true
entry = "Checkout Started"
exit_on = ["Order Completed"]
stages = ["30m"]
template = "cart_abandonment"
""")
    p = run([identify("u", 0), track("Checkout Started", "u", 1), view("z", 200)], cfg)
    assert decisions(p) == [("u", "checkout_rescue", 1, 1, 31, "sent", None)]


def test_exit_if_checked_by_kind_decides_as_checking_after_every_event() -> None:
    # exit_if is skipped after events that cannot change what it reads (nudge/state/program.py,
    # exit_if_kinds); over the sample's shoppers that must change nothing at all.
    import dataclasses
    import itertools

    from nudge.app import sample

    cfg = config("""[triggers.checkout_rescue]
enabled = true
entry = "Checkout Started"
exit_on = ["Order Completed"]
exit_if = "cart_items == 0 or not consent or cart_value < 30"
stages = ["1m", "3h"]
template = "cart_abandonment"
[triggers.browse_abandonment]
enabled = true
exit_if = "views_7d > 40"
""", shards=3)
    records = list(itertools.islice(sample.iter_events(customers=1500, days=5, seed=3), 20000))
    filtered = run(records, cfg)
    assert {j.name: j.exit_if_kinds is not None for j in filtered.program.with_exit_if} == {
        "cart_abandonment": True, "checkout_rescue": True, "browse_abandonment": False}

    program = dataclasses.replace(filtered.program, with_exit_if=tuple(
        dataclasses.replace(j, exit_if_kinds=None) for j in filtered.program.with_exit_if))
    every = Pipeline(cfg, program=program)
    every.feed(records)
    every.end()
    assert decisions(filtered, "checkout_rescue")  # the journey fired at all
    assert decisions(filtered) == decisions(every)
    assert filtered.segments == every.segments and filtered.outcomes == every.outcomes
