"""Decisions depend on event time only: not on batch sizes, interleaving or shard count.

Random shoppers are split over partitions by customer (as Kafka keys split them); each
partition is cut into random chunks and the partitions are interleaved at random. The
decision log must equal the one of a run with one chunk per partition.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import CapsConfig, Config, IdentityConfig, QuietHoursConfig
from nudge.core.timefmt import HOUR
from tests.events import add, identify, order, remove, track, view
from tests.harness import Pipeline, cart_stages

ACTIONS = ["add", "add", "remove", "order", "view", "unsub", "identify", "subscribe",
           "bounce"]


def address_of(user: str) -> str:
    """Every fifth shopper shares one address: consent held by the address crosses shards."""
    return "shared@example.com" if int(user[1:]) % 5 == 0 else f"{user}@example.com"


def shoppers(seed: int, customers: int, steps: int,
             gap: float = 7.0) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    out = []
    clock = 0.0
    for _ in range(steps):
        clock += rng.expovariate(1 / gap)  # minutes
        user = f"u{rng.randrange(customers)}"
        action = rng.choice(ACTIONS)
        # producers are not perfectly ordered: jitter within a few minutes
        t = max(0.0, clock - rng.uniform(0, 3))
        pid = f"sku-{rng.randrange(3)}"
        if action == "add":
            raw = add(user, t, pid=pid)
        elif action == "remove":
            raw = remove(user, t, pid=pid)
        elif action == "order":
            raw = order(user, t)
        elif action == "view":
            raw = view(user, t, pid=pid)
        elif action == "unsub":
            raw = track("Unsubscribed", user, t)
        elif action == "subscribe":
            raw = track("Subscribed", user, t)
        elif action == "bounce":
            raw = track("Email Bounced", user, t, {
                "email": address_of(user), "bounce_type": rng.choice(["soft", "soft", "hard"])})
        else:
            raw = identify(user, t, consent=rng.random() < 0.8, email=address_of(user),
                           tz=rng.choice([None, "Asia/Tokyo", "America/Denver"]))
        out.append((user, raw))
    return out


def split(records: list[tuple[str, bytes]], parts: int) -> list[list[bytes]]:
    import zlib

    by_part: list[list[bytes]] = [[] for _ in range(parts)]
    for user, raw in records:
        by_part[zlib.crc32(user.encode()) % parts].append(raw)
    return by_part


def replay(parts: list[list[bytes]], config: Config, rng: random.Random | None) -> list[tuple]:
    p = Pipeline(config, n_parts=len(parts))
    cursors = [0] * len(parts)
    live = [i for i in range(len(parts))]
    while live:
        i = rng.choice(live) if rng else live[0]
        size = rng.randint(1, 40) if rng else len(parts[i])
        chunk = parts[i][cursors[i]:cursors[i] + size]
        cursors[i] += len(chunk)
        done = cursors[i] >= len(parts[i])
        p.feed(chunk, part=i, final=done)
        if done:
            live.remove(i)
    return p.log()


CONFIGS = [
    Config(shards=4),
    cart_stages(HOUR, 6 * HOUR, shards=7, caps=CapsConfig(max_emails=2, window=12 * HOUR)),
    Config(shards=3, quiet_hours=QuietHoursConfig(enabled=True)),
]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), parts=st.integers(1, 4), which=st.integers(0, 2),
       pacing=st.integers(0, 10_000))
def test_decisions_do_not_depend_on_batching_or_interleaving(seed: int, parts: int,
                                                             which: int, pacing: int) -> None:
    records = shoppers(seed, customers=12, steps=150)
    split_parts = split(records, parts)
    config = CONFIGS[which]
    reference = replay(split_parts, config, None)
    assert replay(split_parts, config, random.Random(pacing)) == reference


def test_decisions_do_not_depend_on_the_shard_count() -> None:
    records = shoppers(3, customers=40, steps=1500)
    parts = split(records, 2)
    logs = [replay(parts, Config(shards=n), random.Random(n)) for n in (1, 4, 64)]
    assert logs[0] == logs[1] == logs[2]
    assert len(logs[0]) > 10


def identity_shoppers(seed: int, customers: int, steps: int,
                      gap: float = 7.0) -> list[tuple[str, bytes]]:
    """Shoppers who browse and fill carts anonymously (several devices each), then log in,
    alias, or carry both ids; some anonymous ids are shared by two users (refused), some
    users take more anonymous ids than the limit. Each record is keyed by the id its
    producer keys it by, so a shopper's anonymous and identified events land on different
    partitions."""
    from tests.events import alias, anon, anon_identify, login

    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    clock = 0.0
    for _ in range(steps):
        clock += rng.expovariate(1 / gap)
        t = max(0.0, clock - rng.uniform(0, 3))
        n = rng.randrange(customers)
        user, device = f"u{n}", f"a{n}-{rng.randrange(3)}"
        if rng.random() < 0.05:
            device = f"a{rng.randrange(customers)}-0"  # a shared device: two users
        pid = f"sku-{rng.randrange(3)}"
        r = rng.random()
        if r < 0.45:
            event = rng.choice(["Product Added", "Product Added", "Product Viewed",
                                "Product Removed", "Checkout Started"])
            props = {"product_id": pid, "name": pid, "price": 10.0, "quantity": 1}
            out.append((device, anon(event, device, t, props)))
        elif r < 0.5:
            out.append((device, anon_identify(device, t, consent=rng.random() < 0.7)))
        elif r < 0.6:
            out.append((user, login(user, device, t, consent=rng.choice([True, False, None]))))
        elif r < 0.65:
            out.append((user, alias(device, user, t)))
        elif r < 0.7:
            props = {"product_id": pid, "name": pid, "price": 10.0, "quantity": 1}
            out.append((user, anon("Product Added", device, t, props, user=user)))
        else:
            out.extend(shoppers(rng.randrange(10**6), customers, 1)[:1])
    return out


IDENTITY_CONFIGS = [
    Config(shards=4),
    cart_stages(HOUR, 6 * HOUR, shards=5, identity=IdentityConfig(shards=3, max_anonymous_ids=2)),
]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), parts=st.integers(1, 4), which=st.integers(0, 1),
       pacing=st.integers(0, 10_000))
def test_merges_do_not_depend_on_batching_or_interleaving(seed: int, parts: int, which: int,
                                                          pacing: int) -> None:
    records = identity_shoppers(seed, customers=8, steps=150)
    split_parts = split(records, parts)
    config = IDENTITY_CONFIGS[which]
    reference = replay(split_parts, config, None)
    assert replay(split_parts, config, random.Random(pacing)) == reference


def test_merges_do_not_depend_on_the_shard_counts() -> None:
    records = identity_shoppers(5, customers=30, steps=1500)
    parts = split(records, 3)
    logs = [replay(parts, Config(shards=n, identity=IdentityConfig(shards=k)), random.Random(n))
            for n, k in ((1, 1), (4, 2), (64, 8))]
    assert logs[0] == logs[1] == logs[2]
    assert sum(1 for d in logs[0] if d[0].startswith("u") and d[5] == "sent") > 5
