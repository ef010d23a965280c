"""Experiment assignment: weighted splits, minimal movement, holdouts, stable everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from nudge.scoring.experiments import bucket, in_holdout, pick_variant

IDS = [f"c{i}" for i in range(100_000)]
ARMS = [("control", 3.0), ("emoji", 1.0), ("short", 1.0)]  # weights need not sum to 1


def test_split_follows_the_weights() -> None:
    counts = Counter(pick_variant(c, "subject", ARMS) for c in IDS)
    total = sum(w for _, w in ARMS)
    for name, weight in ARMS:
        # Binomial sd at n = 100k is at most 0.0016; 0.01 is > 6 sd and far below a real bug.
        assert abs(counts[name] / len(IDS) - weight / total) < 0.01, counts


def test_adding_a_variant_moves_customers_only_to_it() -> None:
    before = {c: pick_variant(c, "subject", ARMS) for c in IDS[:20_000]}
    after = {c: pick_variant(c, "subject", [*ARMS, ("long", 1.0)]) for c in IDS[:20_000]}
    moved = [c for c in before if before[c] != after[c]]
    assert all(after[c] == "long" for c in moved)
    assert abs(len(moved) / len(before) - 1 / 6) < 0.01


def test_zero_weight_is_never_picked_and_comes_back_with_the_same_customers() -> None:
    paused = [("control", 1.0), ("emoji", 0.0)]
    assert {pick_variant(c, "e", paused) for c in IDS[:5000]} == {"control"}
    live = [("control", 1.0), ("emoji", 1.0)]
    first = [pick_variant(c, "e", live) for c in IDS[:5000]]
    assert [pick_variant(c, "e", live) for c in IDS[:5000]] == first


def test_experiments_are_independent() -> None:
    a = [pick_variant(c, "one", [("x", 1), ("y", 1)]) == "x" for c in IDS[:40_000]]
    b = [pick_variant(c, "two", [("x", 1), ("y", 1)]) == "x" for c in IDS[:40_000]]
    both = sum(1 for p, q in zip(a, b, strict=True) if p and q)
    assert abs(both / len(a) - 0.25) < 0.01


@pytest.mark.parametrize("variants", [[], [("a", 0.0)], [("a", -1.0)], [("a", float("nan"))],
                                      [("a", 1.0), ("a", 2.0)]])
def test_bad_variant_lists_are_refused(variants: list[tuple[str, float]]) -> None:
    with pytest.raises(ValueError):
        pick_variant("c1", "e", variants)


def test_bucket_is_uniform_in_the_unit_interval() -> None:
    values = [bucket(c, "e") for c in IDS]
    assert all(0.0 <= v < 1.0 for v in values)
    deciles = Counter(int(v * 10) for v in values)
    assert all(abs(deciles[d] / len(values) - 0.1) < 0.006 for d in range(10)), deciles
    # Fields are length-prefixed: ("ab", "c") and ("a", "bc") are different inputs.
    assert bucket("c", "ab") != bucket("bc", "a")


def test_holdout_share_nested_and_independent_of_the_variant() -> None:
    small = {c for c in IDS if in_holdout(c, "cart", 0.05)}
    large = {c for c in IDS if in_holdout(c, "cart", 0.2)}
    assert small <= large
    assert abs(len(small) / len(IDS) - 0.05) < 0.005
    assert abs(len(large) / len(IDS) - 0.2) < 0.01
    for name, _ in ARMS:  # the holdout takes the same share of every variant
        arm = [c for c in IDS if pick_variant(c, "cart", ARMS) == name]
        assert abs(sum(1 for c in arm if c in large) / len(arm) - 0.2) < 0.02
    assert not any(in_holdout(c, "cart", 0.0) for c in IDS[:1000])
    assert all(in_holdout(c, "cart", 1.0) for c in IDS[:1000])


_PROBE = """
import json, sys
from nudge.scoring.experiments import bucket, in_holdout, pick_variant
ids = [f"c{i}" for i in range(500)] + ["", "ünïcødé", "a" * 300]
arms = [("control", 3.0), ("emoji", 1.0), ("short", 1.0)]
json.dump([[bucket(c, "subject"), pick_variant(c, "subject", arms),
            in_holdout(c, "cart", 0.3)] for c in ids], sys.stdout)
"""


def test_stable_across_processes() -> None:
    ids = [f"c{i}" for i in range(500)] + ["", "ünïcødé", "a" * 300]
    here = [[bucket(c, "subject"), pick_variant(c, "subject", ARMS), in_holdout(c, "cart", 0.3)]
            for c in ids]
    for seed in ("1", "2"):  # different str hash salts: the assignment must not notice
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, check=True,
                             capture_output=True, text=True).stdout
        assert json.loads(out) == here


def test_assignment_is_pinned() -> None:
    # Changing the hash scheme reshuffles every running experiment: it must be deliberate.
    assert bucket("c42", "subject-line") == 0.11218337569845493
    ids = [f"c{i}" for i in range(1, 9)]
    assert [pick_variant(c, "subject", ARMS) for c in ids] == \
        ["control", "control", "emoji", "short", "control", "control", "emoji", "control"]
    assert [in_holdout(c, "cart", 0.5) for c in ids] == \
        [True, True, False, True, False, True, False, True]
