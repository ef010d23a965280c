"""Identity: an anonymous shopper's history follows them when they log in (Segment's model).

Through the pure pipeline (parse -> route -> links -> identity -> shards -> decide), the
same functions the dataflow runs.
"""

from __future__ import annotations

import dataclasses

import orjson

from nudge.core.config import Config, IdentityConfig
from nudge.core.records import Decision
from nudge.state.customer import cart_value
from tests.events import (
    alias,
    anon,
    anon_add,
    anon_identify,
    identify,
    login,
    order,
    product,
    track,
    view,
)
from tests.harness import Pipeline


def run(records: list[bytes], config: Config | None = None, parts: int = 1) -> Pipeline:
    """Records dealt round-robin over `parts` partitions (so a shopper's anonymous and
    identified events travel different partitions), then the end of input."""
    p = Pipeline(config or Config(shards=4), n_parts=parts)
    for i in range(parts):
        p.feed(records[i::parts], part=i)
    p.end()
    return p


def sent(p: Pipeline) -> list[Decision]:
    return [d for d in p.decisions if d.outcome == "sent"]


def record(p: Pipeline, key: str):
    from nudge.core.ids import shard_of

    return p.shards[shard_of(key, p.config.shards)].customer(key)


def dead(p: Pipeline) -> list[tuple[str, str]]:
    return [(d.stage, d.reason) for d in p.dead]


def test_anonymous_cart_then_login_then_abandonment_mails_the_identified_customer() -> None:
    p = run([anon("Product Viewed", "a1", 0, product("sku-1")),
             anon_add("a1", 1, "sku-1", qty=2),
             anon_add("a1", 2, "sku-2"),
             login("u1", "a1", 5, email="ann@example.com"),
             view("other", 300)], parts=2)
    assert [(d.customer_id, d.trigger, d.stage) for d in sent(p)] == [
        ("u1", "cart_abandonment", 1)]
    email = sent(p)[0]
    assert email.context is not None and email.context.email == "ann@example.com"
    assert {(line.product_id, line.quantity) for line in email.context.cart} == {
        ("sku-1", 2), ("sku-2", 1)}
    # due an hour after the last anonymous cart activity, as if it had been the user's
    assert email.due == p.decisions[0].due
    assert not any(d.customer_id == "anon:a1" and d.outcome == "sent" for d in p.decisions)
    assert record(p, "anon:a1") is None  # the anonymous record moved: dropped
    u1 = record(p, "u1")
    assert u1.links[0][0] == "a1" and u1.links[0][2] == {
        "product_viewed": 1, "product_added": 2}
    assert u1.links[0][5] == ["sku-1", "sku-2"]
    assert p.dead == []


def test_a_link_after_the_stage_was_due_reminds_at_the_link() -> None:
    p = run([anon_add("a1", 0), login("u1", "a1", 180), view("other", 600)])
    assert [(d.customer_id, d.due) for d in sent(p)] == [("u1", _ms(180))]


def _ms(minutes: float) -> int:
    from nudge.core.timefmt import parse_iso
    from tests.events import T0

    return parse_iso(T0) + int(minutes * 60_000)


def test_alias_links_and_later_anonymous_events_belong_to_the_user() -> None:
    p = run([identify("u1", 0, email="ann@example.com"), anon_add("a1", 1),
             alias("a1", "u1", 2), anon_add("a1", 3, "sku-9"), view("other", 300)])
    [email] = sent(p)
    assert email.customer_id == "u1" and email.due == _ms(63)
    assert email.context is not None
    assert sorted(line.product_id for line in email.context.cart) == ["sku-1", "sku-9"]
    assert record(p, "u1").links[0][6] == 1  # one event after the link, via the anonymous id


def test_an_order_carrying_the_link_clears_the_merged_cart() -> None:
    # The history runs before the event that carries the link: the order empties the cart.
    raw = orjson.loads(order("u1", 10))
    raw["anonymousId"] = "a1"
    p = run([identify("u1", 0, email="ann@example.com"), anon_add("a1", 1),
             orjson.dumps(raw), view("other", 300)])
    assert sent(p) == []
    assert record(p, "u1").cart == {}


def test_an_unsubscribe_is_not_lifted_by_an_anonymous_id_equal_to_the_user_id() -> None:
    # Issue 13 section 3: anonymous ids and user ids are different namespaces. (An
    # anonymous shopper giving E's address is the address suppression list's case.)
    p = run([identify("E", 0, email="e@example.com"), track("Unsubscribed", "E", 1),
             anon_identify("E", 2, consent=True),
             anon_add("E", 3), track("Product Added", "E", 4, product("sku-1")),
             view("other", 300)])
    assert sent(p) == []
    assert record(p, "E").consent is False
    assert record(p, "anon:E") is not None and record(p, "anon:E").consent is True


def test_an_anonymous_id_never_gives_consent_a_known_user_refused() -> None:
    # Linked, the anonymous id's own identify (consent true) cannot lift the user's no.
    p = run([identify("u1", 0, email="ann@example.com", consent=False),
             login("u1", "a1", 1, email=None, consent=None),
             anon_identify("a1", 2, consent=True, email="mallory@example.com"),
             anon_add("a1", 3), view("other", 300)])
    u1 = record(p, "u1")
    assert (u1.consent, u1.email) == (False, "ann@example.com")
    assert [d.reason for d in p.decisions if d.customer_id == "u1"] == ["no_consent"]


def test_consent_given_in_the_anonymous_session_merges_into_a_new_user() -> None:
    p = run([anon_identify("a1", 0, consent=True), anon_add("a1", 1),
             login("u1", "a1", 2, email="new@example.com", consent=None),
             view("other", 300)])
    assert [d.customer_id for d in sent(p)] == ["u1"]


def test_an_anonymous_id_belongs_to_one_user_a_second_is_refused() -> None:
    p = run([anon_add("a1", 0), login("u1", "a1", 1, email="one@example.com"),
             login("u2", "a1", 2, email="two@example.com"), view("other", 300)])
    assert [d.customer_id for d in sent(p)] == ["u1"]
    assert dead(p) == [("identity", "already_linked")]
    refused = orjson.loads(p.dead[0].raw)
    assert (refused["type"], refused["previousId"], refused["userId"]) == ("alias", "a1", "u2")
    assert record(p, "u2").cart == {} and record(p, "u2").email == "two@example.com"


def test_more_anonymous_ids_a_week_than_the_limit_are_refused() -> None:
    cfg = dataclasses.replace(Config(shards=4), identity=IdentityConfig(max_anonymous_ids=2))
    records = [identify("u1", 0, email="ann@example.com")]
    for i in range(4):
        records += [anon_add(f"a{i}", 10 * i + 1, f"sku-{i}"), login("u1", f"a{i}", 10 * i + 2)]
    p = run([*records, view("other", 600)], cfg)
    assert dead(p) == [("identity", "too_many_anonymous_ids")] * 2
    [email] = sent(p)
    assert email.context is not None
    assert sorted(line.product_id for line in email.context.cart) == ["sku-0", "sku-1"]
    # the refused ones stay anonymous shoppers of their own
    assert record(p, "anon:a3") is not None and record(p, "anon:a3").cart


def test_blocked_identifier_values_never_glue_strangers_together() -> None:
    records = [anon_add("undefined", 0), anon_add("NULL", 1),
               login("u1", "undefined", 2, email="ann@example.com"),
               login("u2", "0", 3, email="bob@example.com"), view("other", 300)]
    p = run(records)
    assert sorted(dead(p)) == [("identity", "blocked_id")] * 2 + [("parse", "blocked_id")] * 2
    assert sent(p) == []  # nobody's cart: the two anonymous carts were refused outright
    assert record(p, "u1").email == "ann@example.com"  # the login itself still counts


def test_page_screen_group_and_the_rest_of_the_spec_are_no_dead_letters() -> None:
    def call(kind: str, **fields) -> bytes:
        return orjson.dumps({"type": kind, "userId": "u1", "timestamp": "2026-10-05T10:00:00Z",
                             **fields})
    records = [call("page", name="Home", properties={"path": "/", "url": "https://x/"}),
               call("screen", name="Cart"), call("group", groupId="g1", traits={"n": 1}),
               call("page", properties=product("sku-7"))]
    records += [track(name, "u1", 1) for name in (
        "Product Added to Wishlist", "Products Searched", "Product List Viewed",
        "Coupon Applied", "Order Refunded", "Order Cancelled")]
    p = run(records)
    assert p.dead == []
    u1 = record(p, "u1")
    assert u1.recent == ["sku-7"] and u1.engagement is not None


def test_rudderstack_context_traits_count_like_traits() -> None:
    raw = orjson.loads(identify("u1", 0, email=None, consent=None))
    del raw["traits"]
    raw["context"] = {"traits": {"email": "ann@example.com", "marketing_consent": True},
                      "library": {"name": "analytics-python"}}
    p = run([orjson.dumps(raw), track("Product Added", "u1", 1, product()), view("o", 300)])
    assert [d.customer_id for d in sent(p)] == ["u1"]
    assert sent(p)[0].context.email == "ann@example.com"  # type: ignore[union-attr]


def test_identity_off_keeps_namespaces_and_links_nothing() -> None:
    cfg = dataclasses.replace(Config(shards=4), identity=IdentityConfig(enabled=False))
    p = run([anon_add("a1", 0), login("u1", "a1", 1), view("other", 300)], cfg)
    assert sent(p) == [] and record(p, "u1").cart == {}
    assert cart_value(record(p, "anon:a1")) == 20.0
