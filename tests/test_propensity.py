"""PropensityModel and ProgressiveMetrics: learns, evaluates honestly, merges, round-trips."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.scoring.propensity import ProgressiveMetrics, PropensityModel


def stream(seed: int, n: int, informative: bool = True) -> list[tuple[dict[str, float], bool]]:
    """A shop-like synthetic stream: purchase odds rise with cart value, recent views and
    opens, fall with days since the last order; one feature is pure noise."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {
            "cart_value": rng.lognormvariate(3.5, 0.8),
            "views_1d": float(rng.randint(0, 12)),
            "opened_7d": float(rng.random() < 0.3),
            "days_since_order": rng.uniform(0, 90),
            "noise": rng.gauss(0, 1),
        }
        logit = (-1.0 + 0.02 * (x["cart_value"] - 40) + 0.35 * (x["views_1d"] - 6)
                 + 1.2 * x["opened_7d"] - 0.03 * (x["days_since_order"] - 45))
        p = 1 / (1 + math.exp(-logit)) if informative else 0.3
        out.append((x, rng.random() < p))
    return out


def test_learns_a_signal_progressively() -> None:
    model = PropensityModel()
    for x, y in stream(7, 4000):
        model.learn(x, y)
    m = model.metrics
    assert m.count == 4000
    assert m.auc is not None and m.auc > 0.8, m.auc
    assert m.log_loss is not None and m.prior_log_loss is not None
    assert m.log_loss < 0.85 * m.prior_log_loss, (m.log_loss, m.prior_log_loss)


def test_no_signal_no_lift() -> None:
    # The control for the test above: labels independent of the features give AUC ~ 0.5.
    model = PropensityModel()
    for x, y in stream(7, 4000, informative=False):
        model.learn(x, y)
    assert model.metrics.auc is not None and abs(model.metrics.auc - 0.5) < 0.05


def test_untrained_scores_half_and_score_learns_nothing() -> None:
    model = PropensityModel()
    x = {"cart_value": 80.0, "views_1d": 3.0}
    assert model.score(x) == 0.5
    before = model.snapshot()
    model.score(x)
    assert model.snapshot() == before


def test_learn_returns_the_prediction_made_before_learning() -> None:
    model = PropensityModel()
    data = stream(3, 300)
    for x, y in data[:200]:
        model.learn(x, y)
    x, y = data[200]
    expected = model.score(x)
    assert model.learn(x, y) == expected
    assert model.score(x) != expected


def test_snapshot_restore_round_trip_then_same_future() -> None:
    data = stream(11, 3000)
    model = PropensityModel(learning_rate=0.02, l2=1e-3)
    for x, y in data[:1500]:
        model.learn(x, y)
    restored = PropensityModel(resume=model.snapshot())  # the snapshot's hyper-parameters win
    assert restored.metrics == model.metrics
    for x, y in data[1500:]:
        assert restored.score(x) == model.score(x)
        assert restored.learn(x, y) == model.learn(x, y)
    assert restored.metrics == model.metrics


def test_restore_refuses_other_data() -> None:
    import pickle

    from nudge.core.errors import SnapshotError

    with pytest.raises(SnapshotError, match=r"start with a new recovery\.dir"):
        PropensityModel(resume=pickle.dumps({"format": 0}))


def test_same_calls_same_scores_bit_for_bit() -> None:
    data = stream(5, 2000)
    a, b = PropensityModel(), PropensityModel()
    pa = [a.learn(x, y) for x, y in data]
    pb = [b.learn(x, y) for x, y in data]
    assert [p.hex() for p in pa] == [p.hex() for p in pb]
    assert a.metrics == b.metrics


_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_propensity import stream
from nudge.scoring.propensity import PropensityModel
m = PropensityModel()
json.dump([m.learn(x, y).hex() for x, y in stream(5, 2000)], sys.stdout)
"""


def test_same_scores_in_another_process() -> None:
    # River keeps weights in a Rust map: the scores must not depend on any per-process seed.
    here = PropensityModel()
    expected = [here.learn(x, y).hex() for x, y in stream(5, 2000)]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", _PROBE.format(root=root)], check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed},
                             capture_output=True, text=True).stdout
        assert json.loads(out) == expected


def test_metrics_of_two_halves_add_up_to_the_whole() -> None:
    model = PropensityModel()
    preds = [(model.learn(x, y), y) for x, y in stream(9, 3000)]
    whole, first, second = ProgressiveMetrics(), ProgressiveMetrics(), ProgressiveMetrics()
    for i, (p, y) in enumerate(preds):
        whole.update(p, y)
        (first if i < 1234 else second).update(p, y)
    assert first + second == whole
    assert (first + second).auc == whole.auc and (first + second).log_loss == whole.log_loss
    assert ProgressiveMetrics.from_dict(whole.to_dict()) == whole
    assert ProgressiveMetrics.unpack(whole.pack()) == whole
    assert json.loads(json.dumps(whole.to_dict())) == whole.to_dict()  # plain data


scored = st.lists(st.tuples(st.floats(0.0, 1.0), st.booleans()), max_size=60)


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(scored, min_size=1, max_size=4))
def test_merging_is_exact_in_any_grouping(parts: list[list[tuple[float, bool]]]) -> None:
    pieces = []
    for part in parts:
        m = ProgressiveMetrics()
        for p, y in part:
            m.update(p, y)
        pieces.append(m)
    whole = ProgressiveMetrics()
    for p, y in (item for part in parts for item in part):
        whole.update(p, y)
    left = pieces[0]
    for m in pieces[1:]:
        left = left + m
    right = pieces[-1]
    for m in reversed(pieces[:-1]):
        right = m + right
    assert left == whole == right


@settings(max_examples=200, deadline=None)
@given(items=scored)
def test_binned_auc_is_the_pairwise_auc_of_the_bins(items: list[tuple[float, bool]]) -> None:
    m = ProgressiveMetrics(bins=10)
    for p, y in items:
        m.update(p, y)
    pos = [min(int(p * 10), 9) for p, y in items if y]
    neg = [min(int(p * 10), 9) for p, y in items if not y]
    if not pos or not neg:
        assert m.auc is None
        return
    pairs = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    assert m.auc == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)


def test_log_loss_is_clipped_and_bad_probabilities_refused() -> None:
    m = ProgressiveMetrics()
    m.update(0.0, True)  # a certain miss costs -ln(1e-15), not infinity
    assert m.log_loss == pytest.approx(-math.log(1e-15))
    m.update(1.0, True)
    assert m.auc is None and m.count == 2 and m.positives == 2
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            m.update(bad, False)
    with pytest.raises(ValueError):
        ProgressiveMetrics(bins=10) + ProgressiveMetrics()
