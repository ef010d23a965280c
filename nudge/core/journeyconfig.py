"""Configuration of what Nudge decides: journeys ([triggers.*]), segments, features, the
propensity model and recommendations. Read by nudge/core/config.py; rules are only syntax here
(text), compiled and checked against the feature names by nudge/state/program.py at start-up.

A trigger starts from the preset of its name (nudge/data/presets.toml) and overrides what
the config sets; a trigger that is not a preset must say `entry` and `stages`:

>>> cfg = parse_triggers(Table({"cart_abandonment": {"stages": ["30m", "24h"]}}, "triggers"))
>>> cart = cfg[0]
>>> (cart.name, cart.enabled, [s.delay for s in cart.stages], cart.exit_on)
('cart_abandonment', True, [1800000, 86400000], ('Order Completed',))
>>> [t.name for t in cfg if t.enabled]
['cart_abandonment']
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nudge.core.configtable import Table, fraction, non_negative
from nudge.core.errors import ConfigError
from nudge.core.timefmt import parse_duration

REENTRY = ("once", "after_exit", "cooldown")
PRESETS_PATH = Path(__file__).resolve().parents[1] / "data" / "presets.toml"


@dataclass(frozen=True, slots=True)
class VariantConfig:
    """One arm of a stage's experiment: another template and/or another subject line."""

    name: str
    weight: float = 1.0
    template: str = ""  # "" = the stage's template
    subject: str = ""  # "" = the template's subject; else a template string


@dataclass(frozen=True, slots=True)
class StageConfig:
    delay: int
    template: str
    experiment: str = ""  # the experiment's name in assignments; "" = "<trigger>.stage<k>"
    variants: tuple[VariantConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    name: str
    enabled: bool
    entry: str  # an event name, "identify", or "segment:<name>"
    stages: tuple[StageConfig, ...]
    where: str = ""  # a rule over the entry event and the customer's features
    min_entries: int = 1
    restart_on: tuple[str, ...] = ()
    exit_on: tuple[str, ...] = ()
    exit_if: str = ""
    reentry: str = "after_exit"
    cooldown: int = 0
    holdout: float = 0.0
    quiet_hours: bool = True
    incentive: bool = False  # may offer the incentive of [model] to low-propensity customers

    @property
    def entry_segment(self) -> str | None:
        return self.entry[len("segment:"):] if self.entry.startswith("segment:") else None


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    name: str
    rule: str


@dataclass(frozen=True, slots=True)
class FeaturesConfig:
    session_gap: int = parse_duration("30m")
    evaluate_after: int = parse_duration("30m")  # segments settle this long after activity
    new_days: int = 30
    lapsed_days: int = 90
    churned_days: int = 180
    default_order_gap: int = parse_duration("60d")
    engagement_half_life: int = parse_duration("30d")
    engagement_weights: tuple[tuple[str, float], ...] = (
        ("email_opened", 1.0), ("email_clicked", 3.0), ("session", 1.0), ("cart_add", 1.0),
        ("order", 5.0))
    top_tier: float = 0.25  # engagement_tier: top 25%, bottom 25%, the middle 50% between
    bottom_tier: float = 0.25


@dataclass(frozen=True, slots=True)
class ModelConfig:
    enabled: bool = True
    learning_rate: float = 0.01  # the intercept's is ten times that
    prior: float = 0.1  # the conversion rate expected before any data (the model's start)
    l2: float = 0.0
    attribution_window: int = parse_duration("3d")  # a send converts if an order follows
    incentive_if: str = "propensity < 0.3"
    incentive_text: str = "10% off your order"
    incentive_code: str = "COMEBACK10"


@dataclass(frozen=True, slots=True)
class RecommendConfig:
    enabled: bool = True
    count: int = 3
    half_life: int = parse_duration("14d")
    neighbours: int = 20
    trending_days: int = 7


def _stage(item: Any, where: str, default_template: str) -> StageConfig:
    if isinstance(item, str):
        return StageConfig(_duration(item, where), default_template)
    if not isinstance(item, dict):
        raise ConfigError(where, f"expected a string (a delay like '1h') or a table, got "
                                 f"{item!r}")
    t = Table(item, where)
    delay = t.get("delay", str, None)
    if delay is None:
        raise ConfigError(t.key("delay"), "a stage needs a delay (e.g. '1h')")
    variants = []
    for i, v in enumerate(t.get("variants", list, [])):
        vt = Table(v, f"{t.key('variants')}[{i}]")
        name = vt.get("name", str, "")
        if not name:
            raise ConfigError(vt.key("name"), "a variant needs a name")
        weight = vt.get("weight", (int, float), 1.0)
        if weight <= 0:
            raise ConfigError(vt.key("weight"), f"must be positive, got {weight}")
        variants.append(VariantConfig(name, float(weight), vt.get("template", str, ""),
                                      vt.get("subject", str, "")))
        vt.done()
    if len({v.name for v in variants}) != len(variants):
        raise ConfigError(t.key("variants"), "variant names must be unique")
    stage = StageConfig(_duration(delay, t.key("delay")), t.get("template", str, default_template),
                        t.get("experiment", str, ""), tuple(variants))
    t.done()
    return stage


def _duration(text: str, where: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


@cache
def presets() -> dict[str, dict[str, Any]]:
    with PRESETS_PATH.open("rb") as f:
        return tomllib.load(f)


def _trigger(name: str, data: dict[str, Any], where: str) -> TriggerConfig:
    preset = presets().get(name, {})
    t = Table({**preset, **data}, where)
    entry = t.get("entry", str, "")
    if not entry:
        raise ConfigError(t.key("entry"), "a trigger needs an entry event (or 'segment:<name>')")
    template = t.get("template", str, name)
    raw = t.get("stages", list, [])
    if not raw:
        raise ConfigError(t.key("stages"), "needs at least one stage (e.g. ['1h'])")
    stages = tuple(_stage(item, f"{t.key('stages')}[{i}]", template)
                   for i, item in enumerate(raw))
    if any(b.delay <= a.delay for a, b in itertools.pairwise(stages)):
        raise ConfigError(t.key("stages"), "delays must increase (e.g. ['1h', '24h'])")
    if stages[0].delay < 0:
        raise ConfigError(f"{t.key('stages')}[0]", "delays are not negative")
    reentry = t.choice("reentry", REENTRY, "after_exit")
    cooldown = t.duration("cooldown", 0)
    if reentry == "cooldown" and cooldown <= 0:
        raise ConfigError(t.key("cooldown"), "reentry = 'cooldown' needs a cooldown (e.g. '7d')")
    cfg = TriggerConfig(
        name=name,
        enabled=t.get("enabled", bool, False),
        entry=entry,
        stages=stages,
        where=t.get("where", str, ""),
        min_entries=t.positive_int("min_entries", 1),
        restart_on=t.strings("restart_on", ()),
        exit_on=t.strings("exit_on", ()),
        exit_if=t.get("exit_if", str, ""),
        reentry=reentry,
        cooldown=cooldown,
        holdout=fraction(t, "holdout", 0.0),
        quiet_hours=t.get("quiet_hours", bool, True),
        incentive=t.get("incentive", bool, False),
    )
    t.done()
    return cfg


def parse_triggers(t: Table) -> tuple[TriggerConfig, ...]:
    """Every preset (as configured) and every trigger the config defines, presets first."""
    names = list(presets()) + sorted(k for k in t.data if k not in presets())
    out = []
    for name in names:
        data = t.data.get(name, {})
        if not isinstance(data, dict):
            raise ConfigError(t.key(name), f"expected a table, got {type(data).__name__}")
        t.seen.add(name)
        out.append(_trigger(name, data, t.key(name)))
    t.done()
    return tuple(out)


def parse_segments(t: Table) -> tuple[SegmentConfig, ...]:
    out = []
    for name in sorted(t.data):
        st = t.table(name)
        rule = st.get("rule", str, "")
        if not rule.strip():
            raise ConfigError(st.key("rule"), "a segment needs a rule")
        st.done()
        out.append(SegmentConfig(name, rule))
    t.done()
    return tuple(out)


def parse_features(t: Table) -> FeaturesConfig:
    d = FeaturesConfig()
    weights_t = t.table("engagement_weights")
    known = dict(d.engagement_weights)
    weights = []
    for name, default in known.items():
        value = weights_t.get(name, (int, float), default)
        if value < 0:
            raise ConfigError(weights_t.key(name), f"must be 0 or more, got {value}")
        weights.append((name, float(value)))
    weights_t.done()
    cfg = FeaturesConfig(
        session_gap=t.duration("session_gap", d.session_gap),
        evaluate_after=t.duration("evaluate_after", d.evaluate_after),
        new_days=t.positive_int("new_days", d.new_days),
        lapsed_days=t.positive_int("lapsed_days", d.lapsed_days),
        churned_days=t.positive_int("churned_days", d.churned_days),
        default_order_gap=t.duration("default_order_gap", d.default_order_gap),
        engagement_half_life=t.duration("engagement_half_life", d.engagement_half_life),
        engagement_weights=tuple(weights),
        top_tier=fraction(t, "top_tier", d.top_tier),
        bottom_tier=fraction(t, "bottom_tier", d.bottom_tier),
    )
    if cfg.top_tier + cfg.bottom_tier > 1:
        raise ConfigError(t.key("top_tier"), "top_tier + bottom_tier must not exceed 1")
    if not cfg.new_days < cfg.lapsed_days < cfg.churned_days:
        raise ConfigError(t.key("lapsed_days"), "needs new_days < lapsed_days < churned_days")
    if cfg.engagement_half_life <= 0 or cfg.session_gap <= 0:
        raise ConfigError(t.key("engagement_half_life"), "durations here must be positive")
    t.done()
    return cfg


def parse_model(t: Table) -> ModelConfig:
    d = ModelConfig()
    cfg = ModelConfig(
        enabled=t.get("enabled", bool, d.enabled),
        learning_rate=float(t.get("learning_rate", (int, float), d.learning_rate)),
        l2=float(t.get("l2", (int, float), d.l2)),
        prior=float(t.get("prior", (int, float), d.prior)),
        attribution_window=t.duration("attribution_window", d.attribution_window),
        incentive_if=t.get("incentive_if", str, d.incentive_if),
        incentive_text=t.get("incentive_text", str, d.incentive_text),
        incentive_code=t.get("incentive_code", str, d.incentive_code),
    )
    if not 0 < cfg.learning_rate <= 1:
        raise ConfigError(t.key("learning_rate"), "must be in (0, 1]")
    if not 0 < cfg.prior < 1:
        raise ConfigError(t.key("prior"), f"must be between 0 and 1 (exclusive), got {cfg.prior}")
    if cfg.attribution_window <= 0:
        raise ConfigError(t.key("attribution_window"), "must be positive")
    t.done()
    return cfg


def parse_recommendations(t: Table) -> RecommendConfig:
    d = RecommendConfig()
    cfg = RecommendConfig(
        enabled=t.get("enabled", bool, d.enabled),
        count=t.positive_int("count", d.count),
        half_life=t.duration("half_life", d.half_life),
        neighbours=t.positive_int("neighbours", d.neighbours),
        trending_days=t.positive_int("trending_days", d.trending_days),
    )
    non_negative(t, "count", cfg.count)
    t.done()
    return cfg
