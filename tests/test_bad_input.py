"""1,000+ bad records mixed into good traffic: every one dead-lettered with its reason and
position, and the decisions for the good traffic exactly as without them."""

from __future__ import annotations

import random
from collections import Counter

from nudge.core.config import Config
from tests.badinput import bad_records
from tests.harness import Pipeline
from tests.test_determinism import shoppers


def test_bad_records_are_dead_lettered_and_good_decisions_unchanged() -> None:
    good = [raw for _, raw in shoppers(21, customers=40, steps=1500)]
    clean = Pipeline(Config(shards=8))
    clean.feed(good)
    clean.end()

    rng = random.Random(4)
    bad = bad_records(rng, 1200)
    mixed: list[bytes] = list(good)
    positions = {}
    for _, raw in bad:
        i = rng.randrange(len(mixed) + 1)
        mixed.insert(i, raw)
    for line_no, raw in enumerate(mixed, start=1):
        positions.setdefault(raw, []).append(line_no)
    dirty = Pipeline(Config(shards=8))
    dirty.feed(mixed[:1000])
    dirty.feed(mixed[1000:])
    dirty.end()

    assert dirty.log() == clean.log()
    assert len(clean.log()) > 20
    assert len(dirty.dead) == len(bad)
    assert Counter(d.reason for d in dirty.dead) == Counter(r for r, _ in bad)
    for d in dirty.dead:
        assert d.position is not None and d.raw in positions
        assert d.position.offset in positions[d.raw]
        assert d.detail
