"""Attribution on a hand-built input whose correct credits and lift are known exactly:
one order, one credit; clicks rank above sends; the holdout on the same clock."""

from __future__ import annotations

import itertools

import orjson
import pytest

from nudge.app.report import build
from nudge.core.config import load_text
from nudge.core.records import Outcome
from nudge.flows.sinks import decision_json, outcome_line
from nudge.scoring.experiments import in_holdout
from tests.events import add, identify, order, track, view
from tests.harness import Pipeline

CONFIG = """
shards = 4
[caps]
max_emails = 10
window = "1m"
[triggers.cart_abandonment]
holdout = 0.5
stages = ["1h", "24h"]
[model]
attribution_window = "3d"
[attribution]
model = "{model}"
"""
CART = "cart_abandonment"


def _people() -> tuple[list[str], list[str]]:
    ids = [f"u{i}" for i in range(40)]
    held = [c for c in ids if in_holdout(c, CART, 0.5)]
    sent = [c for c in ids if not in_holdout(c, CART, 0.5)]
    return sent[:5], held[:2]


def _click(cid: str, minutes: float, stage: int, *, machine: bool = False,
           event: str = "Email Link Clicked") -> bytes:
    return track(event, cid, minutes, {
        "email_key": f"{cid}\x1f{CART}\x1f1\x1f{stage}", "trigger": CART, "stage": stage,
        "variant": None, "machine": machine})


def _events() -> list[bytes]:
    (s1, s2, s3, s4, s5), (h1, h2) = _people()
    out = [identify(c, -10, email=f"{c}@example.com") for c in (s1, s2, s3, s4, s5, h1, h2)]
    for c in (s1, s2, s3, s4, s5, h1, h2):
        out.append(add(c, 0))
    out += [
        order(s3, 30, 999.0),  # before the first stage: no email, nothing to credit
        _click(s4, 61, 1, machine=True),  # a link scanner: no person, no rank
        order(s5, 70, 30.0),  # converts stage 1; the episode ends (no stage 2)
        order(h1, 100, 80.0),  # the holdout converts on its "would have been sent" clock
        _click(s2, 120, 1),  # a person's click on stage 1 ranks it above stage 2
        track("Email Opened", s2, 119, {"email_key": f"{s2}\x1f{CART}\x1f1\x1f1",
                                         "trigger": CART, "stage": 1}),
        order(s5, 200, 45.0),  # stage 1 already has its credit: this order gets none
        order(s1, 1500, 100.0),  # after both stages: last touch -> stage 2
        order(s2, 1500, 50.0),  # after both stages, stage 1 clicked -> stage 1
        view("zz-clock", 10 * 24 * 60),  # moves event time past every window
    ]
    return sorted(out, key=lambda raw: orjson.loads(raw)["timestamp"])


def _run(model: str) -> tuple[Pipeline, dict[tuple[str, int, str], Outcome]]:
    p = Pipeline(load_text(CONFIG.replace("{model}", model)))
    p.feed(_events())
    p.end()
    got = {}
    for o in p.outcomes:
        assert (o.customer_id, o.stage, o.outcome) not in got
        got[(o.customer_id, o.stage, o.outcome)] = o
    return p, got


def test_last_touch_credits_each_order_once_with_clicks_first() -> None:
    (s1, s2, s3, s4, s5), (h1, h2) = _people()
    _, got = _run("last_touch")
    conv = {(c, s): o.revenue for (c, s, kind), o in got.items() if kind == "converted"}
    assert conv == {(s1, 2): 100.0, (s2, 1): 50.0, (s5, 1): 30.0, (h1, 1): 80.0}
    settled = {(c, s) for (c, s, kind) in got if kind == "not_converted"}
    assert settled == {(s1, 1), (s2, 2), (s4, 1), (s4, 2), (h2, 1), (h2, 2)}
    # the holdout's windows start when the email would have been sent
    assert got[(h1, 1, "converted")].decided == got[(s1, 1, "not_converted")].decided
    # engagement: the person's open and click, not the scanner's click
    assert {(c, s, kind) for (c, s, kind) in got if kind in ("opened", "clicked")} == \
        {(s2, 1, "opened"), (s2, 1, "clicked")}
    assert not any(c == s3 for (c, _, _) in got)


def test_first_touch_credits_the_first_email() -> None:
    (s1, s2, _, _, s5), (h1, _) = _people()
    _, got = _run("first_touch")
    conv = {(c, s) for (c, s, kind) in got if kind == "converted"}
    assert conv == {(s1, 1), (s2, 1), (s5, 1), (h1, 1)}


def test_no_attribution_writes_no_conversions() -> None:
    _, got = _run("none")
    assert not any(kind in ("converted", "not_converted") for (_, _, kind) in got)


def test_report_gives_the_exact_lift_over_the_holdout() -> None:
    p, _ = _run("last_touch")
    decisions = [orjson.loads(orjson.dumps(decision_json(d))) for d in p.decisions]
    outcomes = [orjson.loads(outcome_line(o)) for o in p.outcomes]
    r = build(decisions, outcomes + outcomes, min_sample=1)  # repeated lines count once
    (j,) = r.journeys
    # per episode: emails 3 of 4 converted (s1, s2, s5), holdout 1 of 2 (h1)
    assert (j.emails.converted, j.emails.settled, j.emails.revenue) == (3, 4, 180.0)
    assert (j.holdout.converted, j.holdout.settled, j.holdout.revenue) == (1, 2, 80.0)
    assert j.lift is not None and j.lift.lift == pytest.approx(0.5)
    assert j.lift.diff == pytest.approx(0.25)
    stage1, stage2 = j.stages
    assert (stage1.arms["sent"].decided, stage1.arms["sent"].converted) == (4, 2)
    assert (stage1.arms["sent"].opened, stage1.arms["sent"].clicked) == (1, 1)
    assert (stage2.arms["sent"].decided, stage2.arms["sent"].converted) == (3, 1)
    assert (stage1.arms["holdout"].converted, stage2.arms["holdout"].settled) == (1, 1)
    # one order, one credit: the report's revenue is the credited orders' revenue
    assert r.orders == 4 and r.revenue == 260.0
    assert list(itertools.chain.from_iterable(s.comparisons for s in j.stages)) == []


def test_engagement_events_name_their_email_or_are_dead_letters() -> None:
    from nudge.core.config import EventsConfig
    from nudge.core.errors import InputError
    from nudge.flows.contract import Limits, parse_record

    limits = Limits.from_config(EventsConfig(), now_ms=1_900_000_000_000)
    key = f"c1\x1f{CART}\x1f3\x1f2"
    ev = parse_record(track("Email Opened", "c1", 0, {
        "email_key": key, "trigger": CART, "stage": 2, "variant": "urgency",
        "machine": True}), limits)
    assert ev.email is not None
    assert (ev.email.episode, ev.email.stage, ev.email.variant, ev.email.machine) == \
        (3, 2, "urgency", True)
    # another customer's key names no episode of this customer's
    other = parse_record(track("Email Link Clicked", "c2", 0, {
        "email_key": key, "trigger": CART, "stage": 2}), limits)
    assert other.email is not None and other.email.episode == 0
    assert parse_record(track("Email Opened", "c1", 0, {"email_subject": "x"}), limits) \
        .email is None  # an older producer's event: engagement features only
    for props, reason in [({"email_key": key, "trigger": CART, "stage": "2"}, "wrong_type"),
                          ({"email_key": key, "trigger": CART}, "missing_field"),
                          ({"email_key": key, "stage": 1}, "missing_field"),
                          ({"email_key": key, "trigger": CART, "stage": 0}, "out_of_range"),
                          ({"email_key": key, "trigger": CART, "stage": 1, "machine": "yes"},
                           "wrong_type")]:
        with pytest.raises(InputError) as err:
            parse_record(track("Email Delivered", "c1", 0, props), limits)
        assert err.value.reason == reason
