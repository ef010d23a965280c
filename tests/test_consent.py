"""Consent belongs to the address too (issue 13, section 3): an address that unsubscribed,
hard-bounced or complained stays suppressed whatever customer id later carries it; an
unsubscribe is lifted only by an explicit later opt-in of the same customer."""

from __future__ import annotations

import random

import orjson
import pytest

from nudge.core.config import Config
from nudge.core.errors import InputError
from nudge.core.events import Kind
from nudge.flows.parse import parse_record
from tests.events import add, identify, product, track
from tests.harness import Pipeline
from tests.test_determinism import replay, shoppers, split
from tests.test_parse import LIMITS

VICTIM = "victim@example.com"


def run(records: list[bytes], shards: int = 4) -> list[tuple[str, str, str | None]]:
    p = Pipeline(Config(shards=shards))
    p.feed([*records, track("Product Viewed", "zz", 600, product("sku-2"))])  # time moves on
    p.end()
    return [(d.customer_id, d.outcome, d.reason) for d in p.decisions]


def test_an_unsubscribed_address_stays_suppressed_under_a_new_customer_id() -> None:
    assert run([
        identify("D1", 0, email=VICTIM),
        track("Unsubscribed", "D1", 1),
        identify("D2", 2, email="Victim@Example.com"),  # the same mailbox, consent true
        add("D2", 3),
    ]) == [("D2", "suppressed", "address_suppressed")]


def test_another_customers_opt_in_does_not_lift_it() -> None:
    assert run([
        identify("D1", 0, email=VICTIM),
        track("Unsubscribed", "D1", 1),
        identify("D2", 2, email=VICTIM),
        track("Subscribed", "D2", 3),
        identify("D2", 4, email=VICTIM, consent=True),
        add("D2", 5),
    ]) == [("D2", "suppressed", "address_suppressed")]


@pytest.mark.parametrize("opt_in", [
    lambda t: identify("D1", t, email=VICTIM, consent=True),
    lambda t: track("Subscribed", "D1", t),
])
def test_the_same_customers_explicit_opt_in_lifts_it(opt_in: object) -> None:
    assert callable(opt_in)
    assert run([
        identify("D1", 0, email=VICTIM),
        track("Unsubscribed", "D1", 1),
        identify("D2", 2, email=VICTIM),
        opt_in(3),
        add("D2", 5),
    ]) == [("D2", "sent", None)]


def test_an_unsubscribe_holds_until_the_customer_opts_in_again() -> None:
    # D1's own emails: an identify without marketing_consent (a profile update) and any
    # other event leave the withdrawal standing; only the explicit opt-in lifts it
    assert run([
        identify("D1", 0, email=VICTIM),
        track("Unsubscribed", "D1", 1),
        identify("D1", 2, email=VICTIM, consent=None),
        add("D1", 3),
        track("Order Completed", "D1", 100, {"order_id": "o1", "revenue": 20.0}),
        track("Subscribed", "D1", 120),
        add("D1", 130),
    ]) == [("D1", "suppressed", "no_consent"), ("D1", "sent", None)]


def test_a_withdrawal_on_identify_suppresses_the_address() -> None:
    assert run([
        identify("D1", 0, email=VICTIM, consent=True),
        identify("D1", 1, email=VICTIM, consent=False),
        identify("D2", 2, email=VICTIM),
        add("D2", 3),
    ]) == [("D2", "suppressed", "address_suppressed")]


def test_a_customer_who_never_opted_in_does_not_suppress_the_address() -> None:
    assert run([
        identify("D1", 0, email=VICTIM, consent=False),
        identify("D2", 2, email=VICTIM),
        add("D2", 3),
    ]) == [("D2", "sent", None)]


def test_a_hard_bounce_suppresses_the_address_a_soft_one_is_counted() -> None:
    def bounced(kind: str) -> list[tuple[str, str, str | None]]:
        return run([
            identify("D1", 0, email=VICTIM),
            track("Email Bounced", "D1", 1, {"email": VICTIM, "bounce_type": kind,
                                             "email_key": "k", "trigger": "cart_abandonment",
                                             "stage": 1, "provider": "sendgrid",
                                             "reason": "550 5.1.1 user unknown"}),
            identify("D2", 2, email=VICTIM),
            add("D2", 3),
            add("D1", 4),
        ])
    assert bounced("hard") == [("D2", "suppressed", "address_suppressed"),
                               ("D1", "suppressed", "address_suppressed")]
    assert bounced("soft") == [("D2", "sent", None), ("D1", "sent", None)]


def test_a_complaint_suppresses_the_address_and_withdraws_the_customers_consent() -> None:
    assert run([
        identify("D1", 0, email=VICTIM),
        identify("D1", 1, email="new@example.com"),  # the complaint names the old address
        track("Email Marked as Spam", "D1", 2, {"email": VICTIM, "provider": "sendgrid"}),
        identify("D2", 3, email=VICTIM),
        add("D2", 4),
        add("D1", 5),
    ]) == [("D2", "suppressed", "address_suppressed"), ("D1", "suppressed", "no_consent")]


def test_an_unsubscribe_scoped_to_one_journey_leaves_the_others() -> None:
    assert run([
        identify("D1", 0, email=VICTIM),
        track("Unsubscribed", "D1", 1, {"scope": "browse_abandonment"}),
        add("D1", 2),
        identify("D2", 3, email="other@example.com"),
        track("Unsubscribed", "D2", 4, {"scope": "cart_abandonment"}),
        add("D2", 5),
        identify("D3", 6, email="other@example.com"),
        add("D3", 7),
    ]) == [("D1", "sent", None), ("D2", "suppressed", "no_consent"),
           ("D3", "suppressed", "address_suppressed")]


def test_an_unsubscribe_at_the_due_instant_of_another_customers_stage_wins() -> None:
    assert run([
        identify("D2", 0, email=VICTIM),
        add("D2", 0),  # due at 60 minutes
        identify("D1", 1, email=VICTIM),
        track("Unsubscribed", "D1", 60),
    ]) == [("D2", "suppressed", "address_suppressed")]


def test_consent_events_parse_and_bad_ones_are_dead_letters() -> None:
    def raw(event: str, props: dict[str, object]) -> bytes:
        return orjson.dumps({"type": "track", "event": event, "userId": "c1",
                             "timestamp": "2026-10-05T10:00:00Z", "properties": props})
    ev = parse_record(raw("Email Bounced", {"email": "A@Example.com", "bounce_type": "hard"}),
                      LIMITS)
    assert ev.kind == Kind.EMAIL_BOUNCED and ev.consent is not None
    assert (ev.consent.address, ev.consent.bounce) == ("A@example.com", "hard")
    ev = parse_record(raw("Unsubscribed", {"scope": "win_back"}), LIMITS)
    assert ev.consent is not None and ev.consent.scope == "win_back"
    assert parse_record(raw("Subscribed", {}), LIMITS).kind == Kind.SUBSCRIBED
    for event, props, reason in [
        ("Email Bounced", {"bounce_type": "hard"}, "missing_field"),
        ("Email Bounced", {"email": "a@example.com", "bounce_type": "bad"}, "out_of_range"),
        ("Email Bounced", {"email": "a@example.com"}, "missing_field"),
        ("Email Marked as Spam", {"email": "Evil:a@example.com"}, "invalid_email"),
        ("Unsubscribed", {"scope": " "}, "out_of_range"),
    ]:
        with pytest.raises(InputError) as info:
            parse_record(raw(event, props), LIMITS)
        assert info.value.reason == reason, (event, props)


def test_address_suppression_does_not_depend_on_shards_or_batching() -> None:
    records = shoppers(5, customers=40, steps=2000)
    parts = split(records, 3)
    logs = [replay(parts, Config(shards=n), random.Random(n)) for n in (1, 5, 16)]
    assert logs[0] == logs[1] == logs[2]
    reasons = {entry[6] for entry in logs[0]}
    assert "address_suppressed" in reasons and None in reasons
