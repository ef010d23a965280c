"""De-duplication is per customer: another customer's messageId never drops an event, and
an id too long to be one is a dead letter (issue 13, section 2)."""

from __future__ import annotations

from nudge.core.config import Config
from tests.events import add, identify, product, track
from tests.harness import Pipeline


def test_another_customers_message_id_does_not_drop_an_unsubscribe() -> None:
    p = Pipeline(Config(shards=4))
    p.feed([
        identify("E", 0, email="e@example.com"),
        add("E", 1),
        # atk0 copies E's next messageId into an event of its own, earlier in event time
        track("Product Viewed", "atk0", 2, product("sku-9"), message_id="unsub-E"),
        track("Unsubscribed", "E", 3, message_id="unsub-E"),
        track("Product Viewed", "z", 120, product("sku-2")),  # event time moves on
    ])
    p.end()
    assert [(d.customer_id, d.outcome, d.reason) for d in p.decisions] == \
        [("E", "suppressed", "no_consent")]


def test_the_same_customers_retry_is_still_a_duplicate() -> None:
    p = Pipeline(Config(shards=4))
    p.feed([add("E", 1, message_id="add-1"), add("E", 2, message_id="add-1"),
            add("F", 2, message_id="add-1")])
    p.end()
    assert sum(s.stats["duplicates"] for s in p.shards) == 1
    carts = {cid: s.customer(cid).cart["sku-1"].quantity for s in p.shards for cid in ("E", "F")
             if s.customer(cid) is not None}
    assert carts == {"E": 1, "F": 1}


def test_a_message_id_longer_than_256_characters_is_a_dead_letter() -> None:
    p = Pipeline(Config(shards=2))
    p.feed([track("Product Viewed", "c1", 0, product(), message_id="x" * 257),
            track("Product Viewed", "c1", 1, product(), message_id="y" * 256)])
    p.end()
    assert [(d.reason, d.position.offset if d.position else None) for d in p.dead] == \
        [("message_id_too_long", 1)]
    assert "257 characters" in p.dead[0].detail
