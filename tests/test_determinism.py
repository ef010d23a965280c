"""Decisions depend on event time only: not on batch sizes, interleaving or shard count.

Random shoppers are split over partitions by customer (as Kafka keys split them); each
partition is cut into random chunks and the partitions are interleaved at random. The
decision log must equal the one of a run with one chunk per partition.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import CapsConfig, Config, QuietHoursConfig
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
