"""The bench's pure helpers: medians, start-up subtraction, ratios, verdicts, its config
files. No timing is asserted (the report prints figures; it is not a test)."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from nudge.core import config as config_mod
from nudge.tools.bench.stats import median, ratio, steady_rate, verdict
from nudge.tools.bench.whole import to_toml, write_config


def test_median_ignores_one_slow_run() -> None:
    assert median([16.5, 24.5, 17.0]) == 17.0
    assert median([2.0, 4.0]) == 3.0
    with pytest.raises(ValueError):
        median([])


def test_steady_rate_subtracts_the_start_up_cost() -> None:
    # 1M events in 16.5 s of which 2.3 s are start-up: 1M / 14.2 s
    assert steady_rate(1_000_000, 16.5, 2.3) == pytest.approx(1_000_000 / 14.2)
    # start-up as long as the run (noise on a tiny input): the whole time is used
    assert steady_rate(1_000, 2.0, 2.5) == 500.0
    with pytest.raises(ValueError):
        steady_rate(10, 0.0, 0.0)


def test_ratio_and_verdict() -> None:
    assert ratio(64_651, 118_386) == pytest.approx(0.546, abs=1e-3)
    assert math.isnan(ratio(1.0, 0.0))
    assert verdict(0.86, 0.85) == "met"
    assert verdict(0.546, 0.85) == "not met"
    assert verdict(float("nan"), 0.85) == "n/a"
    assert verdict(0.8, 1.0, higher=False) == "met"
    assert verdict(2.3, 1.0, higher=False) == "not met"


def test_to_toml_round_trips_the_demo_config() -> None:
    with (Path(config_mod.__file__).parents[1] / "data" / "demo.toml").open("rb") as f:
        doc = tomllib.load(f)
    assert tomllib.loads(to_toml(doc)) == doc


@pytest.mark.parametrize("profile", ["lean", "all"])
def test_bench_configs_load(tmp_path: Path, profile: str) -> None:
    path = write_config(tmp_path / "c.toml", tmp_path / "out", profile, "kafka",
                        "127.0.0.1:9092", "t")
    cfg = config_mod.load(path)
    assert cfg.kafka.topic == "t" and not cfg.kafka.tail
    assert cfg.delivery.transport == "kafka"
    assert cfg.secrets.signing_key == "bench"
    assert cfg.outputs.decisions == str(tmp_path / "out" / "decisions.jsonl")
    if profile == "lean":
        assert not cfg.model.enabled and not cfg.recommendations.enabled
        assert cfg.outputs.profiles == ""
    else:
        assert cfg.model.enabled and all(Path(f).is_file() for f in cfg.catalog.files)
        assert cfg.triggers == config_mod.load(Path(config_mod.__file__).parents[1] / "data"
                                               / "demo.toml").triggers
