"""Invariants over random shopper histories, valid and invalid records mixed (hypothesis),
with the cart journey alone or every journey at once: never more than the cap in a window
across journeys, never an email for a cart episode after its order or after its cart
emptied, never an email after a consent withdrawal with an earlier event time, one decision
per idempotency key, an email address on every send."""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import CapsConfig, EventsConfig, load_text
from nudge.core.errors import InputError
from nudge.core.events import Kind
from nudge.core.timefmt import HOUR
from nudge.flows.parse import Limits, PartitionClock, parse_record
from tests.badinput import bad_records
from tests.harness import Pipeline, cart_stages
from tests.test_determinism import shoppers

LIMITS = Limits.from_config(EventsConfig(), now_ms=1_800_000_000_000)


ALL_JOURNEYS = """
[triggers.browse_abandonment]
enabled = true
[triggers.post_purchase]
enabled = true
stages = ["3h"]
[triggers.welcome]
enabled = true
stages = ["0m", "2h", "6h"]
[triggers.win_back]
enabled = true
stages = ["0m", "5h"]
[segments.lapsed]
rule = "orders_total > 0 and days_since_last_order >= 1"
[features]
evaluate_after = "10m"
"""


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 100_000), cap=st.integers(1, 3),
       window_h=st.sampled_from([1, 6, 24]), stages=st.sampled_from([(1,), (1, 5), (2, 24)]),
       bad=st.integers(0, 60), every_journey=st.booleans())
def test_invariants_hold(seed: int, cap: int, window_h: int, stages: tuple[int, ...],
                         bad: int, every_journey: bool) -> None:
    cfg = cart_stages(*(s * HOUR for s in stages), shards=5,
                      caps=CapsConfig(max_emails=cap, window=window_h * HOUR))
    if every_journey:
        others = load_text(ALL_JOURNEYS)
        cfg = dataclasses.replace(
            others, shards=5, caps=cfg.caps, segments=others.segments, triggers=tuple(
                cfg.trigger(t.name) if t.name == "cart_abandonment" else t
                for t in others.triggers))
    records = [raw for _, raw in shoppers(seed, customers=6, steps=250, gap=10.0)]
    rng = random.Random(seed)
    for _, raw in bad_records(rng, bad):
        records.insert(rng.randrange(len(records) + 1), raw)
    p = Pipeline(cfg)
    p.feed(records)
    p.end()

    assert len(p.dead) == bad
    assert all(d.reason for d in p.dead)

    # Rebuild each customer's history with the effective event times the README promises:
    # a record later than the allowed lateness is applied at the partition's watermark.
    clock = PartitionClock(EventsConfig().allowed_lateness)
    history: dict[str, list] = {}
    for raw in records:
        try:
            ev = parse_record(raw, LIMITS)
        except InputError:
            continue
        (ev,) = clock.admit([ev])
        history.setdefault(ev.customer_id, []).append(ev)
    for events in history.values():  # ... and in event-time order, as a shard applies it
        events.sort(key=lambda ev: (ev.ts, ev.offset))

    keys = [d.idempotency_key for d in p.decisions]
    assert len(keys) == len(set(keys))  # one decision per (customer, trigger, episode, stage)
    for d in p.decisions:  # only a sent decision carries what an email needs
        assert (d.context is not None) == (d.outcome == "sent"), d
        assert d.outcome != "sent" or d.context.email  # type: ignore[union-attr]

    sent: dict[str, list[int]] = {}
    for d in p.decisions:
        if d.outcome == "sent":
            sent.setdefault(d.customer_id, []).append(d.due)
    for cid, times in sent.items():
        times.sort()
        for i, t in enumerate(times):
            in_window = [u for u in times[: i + 1] if u > t - window_h * HOUR]
            assert len(in_window) <= cap, (cid, times)

    for d in p.decisions:
        if d.outcome != "sent":
            continue
        events = history[d.customer_id]
        # consent: the last consent statement at or before the due time must be a "yes"
        consent = None
        for ev in events:
            if ev.ts <= d.due:
                if ev.kind in (Kind.UNSUBSCRIBED, Kind.EMAIL_MARKED_SPAM):
                    consent = False
                elif ev.kind == Kind.SUBSCRIBED:
                    consent = True
                elif ev.kind == Kind.IDENTIFY and ev.traits and \
                        ev.traits.marketing_consent is not None:
                    consent = ev.traits.marketing_consent
        assert consent is True, d
        if d.trigger != "cart_abandonment":
            continue
        # no order between the episode's last add and the due time, in the order the shard
        # applies them: an order and an add at one instant go by source position
        applied = [ev for ev in events if ev.ts <= d.due]
        last_add = max(i for i, ev in enumerate(applied) if ev.kind == Kind.PRODUCT_ADDED)
        orders = [ev.ts for ev in applied[last_add:] if ev.kind == Kind.ORDER_COMPLETED]
        assert not orders, (d, orders)
