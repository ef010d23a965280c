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
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from nudge.core.configspec import (
    Bound,
    Duration,
    Fraction,
    NonEmpty,
    Positive,
    PositiveDuration,
    read,
    setting,
)
from nudge.core.configtable import Table
from nudge.core.errors import ConfigError
from nudge.core.timefmt import parse_duration

Reentry = Literal["once", "after_exit", "cooldown"]
PRESETS_PATH = Path(__file__).resolve().parents[1] / "data" / "presets.toml"


@dataclass(frozen=True, slots=True)
class VariantConfig:
    """One arm of a stage's experiment: another template and/or another subject line."""

    name: Annotated[str, NonEmpty("a variant needs a name")] = setting(
        doc="The variant's name, in decisions, outcomes and the links' `utm_content`.")
    weight: Annotated[float, Bound(lo=0, lo_open=True)] = setting(
        1.0, "Its share of the stage's customers, relative to the other variants' weights.")
    template: str = setting("", "Another template; empty: the stage's.")
    subject: str = setting("", "Another subject line (a template string); empty: the "
                               "template's.")


@dataclass(frozen=True, slots=True)
class StageConfig:
    """A stage: a delay (`"1h"`), or a table with the keys below."""

    delay: Duration = setting(
        doc="How long after the entry (or the last `restart_on` event) the email is due; "
            "delays increase from stage to stage.")
    template: str = setting("", "The stage's template; default: the trigger's `template`.",
                            shown="the trigger's")
    experiment: str = setting(
        "", "The experiment's name in assignments; empty: `<trigger>.stage<k>`.")
    variants: tuple[VariantConfig, ...] = setting(
        (), "An A/B test: the stage's customers split by a stable hash among these.")

    def problems(self) -> Iterator[tuple[str, str]]:
        if len({v.name for v in self.variants}) != len(self.variants):
            yield "variants", "variant names must be unique"


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """A journey. A preset (nudge/data/presets.toml) gives defaults for every key."""

    name: str = setting(key=False)  # the table's name
    entry: Annotated[str, NonEmpty("a trigger needs an entry event (or 'segment:<name>')")] = (
        setting(doc="What starts an episode: an event name, `identify`, or "
                    "`segment:<name>` (entering that segment)."))
    stages: tuple[StageConfig, ...] = setting(
        doc="The emails of an episode, e.g. `[\"1h\", { delay = \"24h\", template = "
            "\"reminder\" }]`.", kind="list of delays or stage tables")
    enabled: bool = setting(False, "Run this journey (only `cart_abandonment` is on by default).")
    template: str = setting("", "The stages' template (`nudge/templates/<template>/`); empty: "
                                "the trigger's name.", shown="the trigger's name")
    where: str = setting("", "A rule over the entry event and the customer's features; empty: "
                             "every entry counts.")
    min_entries: Positive = setting(1, "Entry events before the stages are armed.")
    restart_on: tuple[str, ...] = setting(
        (), "Events that move the instant the stages count from.")
    exit_on: tuple[str, ...] = setting((), "Events that end the episode without an email.")
    exit_if: str = setting("", "A rule checked after each event; true ends the episode.")
    reentry: Reentry = setting(
        "after_exit", "When a customer may start again: `once` ever, `after_exit` of the "
                      "last episode, or after a `cooldown`.")
    cooldown: Duration = setting(0, "With `reentry = \"cooldown\"`: the wait after an episode.")
    holdout: Fraction = setting(
        0.0, "Share of customers who get nothing (outcome `holdout`): the control group.")
    quiet_hours: bool = setting(True, "Apply `[quiet_hours]` when it is enabled.")
    incentive: bool = setting(
        False, "May offer the `[model]` incentive to low-propensity customers.")

    @property
    def entry_segment(self) -> str | None:
        return self.entry[len("segment:"):] if self.entry.startswith("segment:") else None

    def problems(self) -> Iterator[tuple[str, str]]:
        if any(b.delay <= a.delay for a, b in itertools.pairwise(self.stages)):
            yield "stages", "delays must increase (e.g. ['1h', '24h'])"
        if self.reentry == "cooldown" and self.cooldown <= 0:
            yield "cooldown", "reentry = 'cooldown' needs a cooldown (e.g. '7d')"


@dataclass(frozen=True, slots=True)
class SegmentConfig:
    name: str = setting(key=False)  # the table's name
    rule: Annotated[str, NonEmpty("a segment needs a rule")] = setting(
        doc="A rule over the customer's features, e.g. `orders_30d >= 3`.")

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.rule.strip():
            yield "rule", "a segment needs a rule"


ENGAGEMENT_WEIGHTS = (("email_opened", 1.0), ("email_clicked", 3.0), ("session", 1.0),
                      ("cart_add", 1.0), ("order", 5.0))


def _weights(t: Table, name: str) -> tuple[tuple[str, float], ...]:
    wt = t.table(name)
    out = []
    for key, default in ENGAGEMENT_WEIGHTS:
        value = wt.get(key, (int, float), default)
        if value < 0:
            raise ConfigError(wt.key(key), f"must be at least 0, got {value}")
        out.append((key, float(value)))
    wt.done()
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FeaturesConfig:
    session_gap: PositiveDuration = setting(
        parse_duration("30m"), "Inactivity that ends a session (sessions, co-viewed products).")
    evaluate_after: Duration = setting(
        parse_duration("30m"), "Segments are evaluated this long after a customer's first "
                               "event since the last evaluation.")
    new_days: Positive = setting(30, "Lifecycle `new`: first seen or first order within this "
                                     "many days.")
    lapsed_days: Positive = setting(90, "Lifecycle `lapsed`: no order for this many days.")
    churned_days: Positive = setting(180, "Lifecycle `churned`: no order for this many days.")
    default_order_gap: Duration = setting(
        parse_duration("60d"), "The expected gap between orders of a customer with fewer than "
                               "two.")
    engagement_half_life: PositiveDuration = setting(
        parse_duration("30d"), "The engagement score's half-life.")
    engagement_weights: tuple[tuple[str, float], ...] = setting(
        ENGAGEMENT_WEIGHTS, "What each action adds to the engagement score (numbers >= 0): "
                            + ", ".join(f"`{k} = {v:g}`" for k, v in ENGAGEMENT_WEIGHTS) + ".",
        parse=_weights, kind="table of numbers",
        shown="{ " + ", ".join(f"{k} = {v:g}" for k, v in ENGAGEMENT_WEIGHTS) + " }")
    top_tier: Fraction = setting(0.25, "`engagement_tier` top: this share of the shard's "
                                       "customers by score.")
    bottom_tier: Fraction = setting(0.25, "`engagement_tier` bottom share; the middle is "
                                          "the rest.")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.top_tier + self.bottom_tier > 1:
            yield "top_tier", "top_tier + bottom_tier must not exceed 1"
        if not self.new_days < self.lapsed_days < self.churned_days:
            yield "lapsed_days", "needs new_days < lapsed_days < churned_days"


@dataclass(frozen=True, slots=True)
class ModelConfig:
    enabled: bool = setting(True, "Learn and score the propensity model.")
    learning_rate: Annotated[float, Bound(0, 1, lo_open=True)] = setting(
        0.01, "The weights' learning rate; the intercept's is ten times that.")
    prior: Annotated[float, Bound(0, 1, lo_open=True, hi_open=True)] = setting(
        0.1, "The conversion rate expected before any data (the model's start).")
    l2: Annotated[float, Bound(lo=0)] = setting(0.0, "L2 regularisation of the weights.")
    attribution_window: PositiveDuration = setting(
        parse_duration("3d"), "A decision converts if an order follows within this.")
    incentive_if: str = setting("propensity < 0.3", "Which customers of a journey with "
                                                    "`incentive = true` get the incentive.")
    incentive_text: str = setting("10% off your order", "The incentive, in the email.")
    incentive_code: str = setting("COMEBACK10", "Its code, in the email.")


@dataclass(frozen=True, slots=True)
class RecommendConfig:
    enabled: bool = setting(True, "Count co-views, co-purchases and trends, and recommend.")
    count: Positive = setting(3, "Products recommended in an email.")
    half_life: PositiveDuration = setting(parse_duration("14d"),
                                          "The half-life of co-occurrence counts.")
    neighbours: Positive = setting(20, "Neighbours kept per product.")
    trending_days: Positive = setting(7, "Days of activity that make a product trend.")


def _stage(item: Any, where: str, default_template: str) -> StageConfig:
    if isinstance(item, str):
        return StageConfig(_duration(item, where), default_template)
    if not isinstance(item, dict):
        raise ConfigError(where, f"expected a string (a delay like '1h') or a table, got "
                                 f"{item!r}")
    given = {} if "template" in item else {"template": default_template}
    stage: StageConfig = read(StageConfig, Table(item, where), **given)
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
    t = Table({**presets().get(name, {}), **data}, where)
    template = t.get("template", str, "") or name
    raw = t.get("stages", list, None)
    if not raw:
        raise ConfigError(t.key("stages"), "needs at least one stage (e.g. ['1h'])")
    stages = tuple(_stage(item, f"{t.key('stages')}[{i}]", template)
                   for i, item in enumerate(raw))
    trigger: TriggerConfig = read(TriggerConfig, t, name=name, stages=stages, template=template)
    return trigger


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


@cache
def default_triggers() -> tuple[TriggerConfig, ...]:
    """The presets as they ship (the triggers of a config that sets none)."""
    return parse_triggers(Table({}, "triggers"))


def parse_segments(t: Table) -> tuple[SegmentConfig, ...]:
    out = []
    for name in sorted(t.data):
        out.append(read(SegmentConfig, t.table(name), name=name))
    t.done()
    return tuple(out)
