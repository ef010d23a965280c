"""Customer features at an event time: the names segment rules, trigger conditions and
templates read. Computed on demand from the record (nudge/state/customer.py) and cached for one
evaluation; nothing here is stored.

Every feature says how it changes when no event arrives, which is what lets a segment
like "no order for 90 days" be entered at the right event time without re-evaluating
every customer every day (nudge/state/rules.py):

    static      changes only with the customer's events (cart_value, orders_total)
    window      a windowed count: changes when a counted bucket leaves the window
    clock       moves with time alone, monotonically (days_since_last_order): `crossing`
                says when it reaches a value
    population  depends on other customers or on the model (engagement_percentile,
                propensity): follows them at the customer's own evaluations only

>>> from nudge.state.customer import Customer
>>> c = Customer(); c.orders, c.last_order, c.first_order = 2, 1000 * DAY, 900 * DAY
>>> ctx = Context(c, 1010 * DAY + 5, Env())
>>> ctx["days_since_last_order"], ctx["lifecycle"]
(10, 'active')
>>> FEATURES["days_since_last_order"].crossing(ctx, 90) == 1090 * DAY
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nudge.core.events import Kind
from nudge.core.journeyconfig import FeaturesConfig
from nudge.core.timefmt import DAY, HOUR
from nudge.state.customer import (
    ADDS,
    ADDS_H,
    CLICKS,
    OPENS,
    ORDERS,
    SPEND,
    VIEWS,
    VIEWS_H,
    Customer,
    cart_items,
    cart_value,
)
from nudge.state.windows import next_expiry, window_sum


@dataclass(slots=True)
class Env:
    """What features need beyond the record: settings, and the shard's population-wide
    estimates (engagement ranks, the propensity model), which the shard supplies."""

    config: FeaturesConfig = field(default_factory=FeaturesConfig)
    engagement_percentile: Callable[[Customer], float] = lambda c: 0.5
    propensity: Callable[[Context], float] = lambda ctx: 0.0


MISSING: Any = object()


class Context:
    """One customer at one event time `t`; features, and when they change, computed once
    each, on first use (several rules read the same features)."""

    __slots__ = ("c", "cache", "changes_cache", "day", "env", "hour", "inputs", "series", "t")

    def __init__(self, c: Customer, t: int, env: Env) -> None:
        self.c = c
        self.t = t
        self.env = env
        self.day = t // DAY
        self.hour = t // HOUR
        self.cache: dict[str, Any] = {}
        self.changes_cache: dict[str, int | None] = {}
        self.inputs: dict[str, float] | None = None  # model_inputs(), once
        self.series: dict[str, list[list[Any]]] = {}  # counter prefix -> its series, once

    # A sentinel rather than KeyError: every feature misses once per context, and raising
    # and catching the KeyError cost more than computing most features.
    def __getitem__(self, name: str) -> Any:
        value = self.cache.get(name, MISSING)
        if value is MISSING:
            value = self.cache[name] = FEATURES[name].compute(self)
        return value

    def changes(self, name: str) -> int | None:
        """When feature `name` next changes with time alone (None: only with events)."""
        value = self.changes_cache.get(name, MISSING)
        if value is MISSING:
            value = self.changes_cache[name] = FEATURES[name].changes(self)
        return value


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    kind: str  # static | window | clock | population
    compute: Callable[[Context], Any]
    doc: str
    # window and clock features: the next time (> ctx.t) its value changes, or None
    changes: Callable[[Context], int | None] = lambda ctx: None
    # clock features: when the value reaches `value` (monotone: rising or falling), or None
    crossing: Callable[[Context, float], int | None] | None = None
    # static features: the event kinds whose facts can change the value (None: any kind)
    changed_by: frozenset[int] | None = None


FEATURES: dict[str, Feature] = {}
# Functions of a category, for rules like `views_7d("shoes") > 3`: (counter prefix, width,
# hourly). 1-day windows count hour buckets, longer ones day buckets.
CATEGORY_FUNCTIONS: dict[str, tuple[str, int, bool]] = {}


def _static(name: str, doc: str, fn: Callable[[Customer], Any],
            changed_by: frozenset[int]) -> None:
    FEATURES[name] = Feature(name, "static", lambda ctx: fn(ctx.c), doc, changed_by=changed_by)


# Which kinds change them: what nudge/state/customer.py:apply_facts writes for each kind.
_CART = frozenset({Kind.PRODUCT_ADDED, Kind.PRODUCT_REMOVED, Kind.ORDER_COMPLETED})
_ORDER = frozenset({Kind.ORDER_COMPLETED})
_PROFILE = frozenset({Kind.IDENTIFY})
_CONSENT = frozenset({Kind.IDENTIFY, Kind.UNSUBSCRIBED})
_static("cart_value", "value of the cart", cart_value, _CART)
_static("cart_items", "items in the cart (quantities summed)", cart_items, _CART)
_static("has_email", "an email address is known", lambda c: bool(c.email), _PROFILE)
_static("consent", "marketing consent given and not withdrawn",
        lambda c: c.consent is True, _CONSENT)
_static("orders_total", "orders ever", lambda c: c.orders, _ORDER)
_static("spend_total", "spend ever", lambda c: c.spend, _ORDER)
_static("aov", "average order value",
        lambda c: round(c.spend / c.orders, 2) if c.orders else 0.0, _ORDER)


def changed_by(names: frozenset[str]) -> frozenset[int] | None:
    """The event kinds that can change any of these features, or None when time or any
    event may (a window, a clock, the population, a name this table does not know).

    >>> sorted(changed_by(frozenset({"cart_items", "consent"})))
    [2, 3, 6, 7, 8]
    >>> changed_by(frozenset({"cart_items", "views_7d"})) is None
    True
    """
    kinds: set[int] = set()
    for name in names:
        feature = FEATURES.get(name)
        if feature is None or feature.changed_by is None:
            return None
        kinds |= feature.changed_by
    return frozenset(kinds)


# -- windowed counts --------------------------------------------------------------------

def _series(ctx: Context, prefix: str) -> list[list[Any]]:
    """The counters whose key starts with `prefix`, in the record's order, found once per
    context: a segment evaluation reads several windows of one prefix, for its value and
    for when it changes. A prefix without ":" names one counter (no category key starts
    with it: those are "v:", "vh:", "a:", "ah:" + category), so it is looked up."""
    found = ctx.series.get(prefix)
    if found is None:
        counters = ctx.c.counters
        if ":" in prefix:
            found = [series for key, series in counters.items() if key.startswith(prefix)]
        else:
            one = counters.get(prefix)
            found = [] if one is None else [one]
        ctx.series[prefix] = found
    return found


def _category_sum(ctx: Context, prefix: str, width: int, hourly: bool) -> float:
    now = ctx.hour if hourly else ctx.day
    return sum(window_sum(series, now, width) for series in _series(ctx, prefix))


def _category_max(ctx: Context, prefix: str, width: int, hourly: bool) -> float:
    now = ctx.hour if hourly else ctx.day
    return max((window_sum(series, now, width) for series in _series(ctx, prefix)),
               default=0.0)


def _expiry(ctx: Context, prefix: str, width: int, hourly: bool) -> int | None:
    now, unit = (ctx.hour, HOUR) if hourly else (ctx.day, DAY)
    times = [b for series in _series(ctx, prefix)
             for b in [next_expiry(series, now, width)] if b is not None]
    return min(times) * unit if times else None


def _window(name: str, doc: str, prefix: str, width: int, hourly: bool, agg: str) -> None:
    fn = _category_sum if agg == "sum" else _category_max
    FEATURES[name] = Feature(name, "window", lambda ctx: int(fn(ctx, prefix, width, hourly)),
                             doc, changes=lambda ctx: _expiry(ctx, prefix, width, hourly))


for _label, _prefix, _hprefix in (("views", VIEWS, VIEWS_H), ("cart_adds", ADDS, ADDS_H)):
    _window(f"{_label}_1d", f"{_label.replace('_', ' ')} in the last 24 hours", _hprefix, 24,
            True, "sum")
    for _days in (7, 30):
        _window(f"{_label}_{_days}d", f"{_label.replace('_', ' ')} in the last {_days} days",
                _prefix, _days, False, "sum")
_window("max_category_views_1d", "views of the most viewed category, 24 hours", VIEWS_H, 24,
        True, "max")
for _days in (7, 30):
    _window(f"max_category_views_{_days}d",
            f"views of the most viewed category, {_days} days", VIEWS, _days, False, "max")
def _spend(days: int) -> Feature:
    def compute(ctx: Context) -> float:
        return round(window_sum(ctx.c.counters.get(SPEND, []), ctx.day, days), 2)

    def changes(ctx: Context) -> int | None:
        return _expiry(ctx, SPEND, days, False)

    return Feature(f"spend_{days}d", "window", compute, f"spend in the last {days} days",
                   changes)


for _days in (7, 30, 90, 180, 365):
    _window(f"orders_{_days}d", f"orders in the last {_days} days", ORDERS, _days, False, "sum")
    FEATURES[f"spend_{_days}d"] = _spend(_days)
for _days in (7, 30):
    _window(f"email_opens_{_days}d", f"emails opened in the last {_days} days", OPENS, _days,
            False, "sum")
    _window(f"email_clicks_{_days}d", f"email links clicked in the last {_days} days", CLICKS,
            _days, False, "sum")
for _label, _prefix, _hprefix in (("views", VIEWS, VIEWS_H), ("adds", ADDS, ADDS_H)):
    CATEGORY_FUNCTIONS[f"{_label}_1d"] = (_hprefix, 24, True)
    for _days in (7, 30):
        CATEGORY_FUNCTIONS[f"{_label}_{_days}d"] = (_prefix, _days, False)


def category_count(ctx: Context, function: str, category: str) -> int:
    prefix, width, hourly = CATEGORY_FUNCTIONS[function]
    series = ctx.c.counters.get(prefix + category)
    if not series:
        return 0
    return int(window_sum(series, ctx.hour if hourly else ctx.day, width))


def category_expiry(ctx: Context, function: str, category: str) -> int | None:
    prefix, width, hourly = CATEGORY_FUNCTIONS[function]
    now, unit = (ctx.hour, HOUR) if hourly else (ctx.day, DAY)
    b = next_expiry(ctx.c.counters.get(prefix + category, []), now, width)
    return None if b is None else b * unit


def preferred_categories(ctx: Context, n: int = 3) -> list[str]:
    """Most viewed and added (adds count 3) over 30 days; ties by name."""
    scores: dict[str, float] = {}
    for key, series in ctx.c.counters.items():
        if key.startswith(VIEWS):
            weight = 1.0
        elif key.startswith(ADDS):
            weight = 3.0
        else:
            continue
        cat = key[key.index(":") + 1:]
        if cat:
            scores[cat] = scores.get(cat, 0.0) + weight * window_sum(series, ctx.day, 30)
    ranked = sorted((cat for cat, s in scores.items() if s > 0), key=lambda k: (-scores[k], k))
    return ranked[:n]


FEATURES["preferred_category"] = Feature(
    "preferred_category", "window",
    lambda ctx: next(iter(preferred_categories(ctx, 1)), None),
    "the most viewed/added category over 30 days (none without activity)",
    changes=lambda ctx: min(filter(None, (_expiry(ctx, VIEWS, 30, False),
                                          _expiry(ctx, ADDS, 30, False))), default=None))


# -- clock features ---------------------------------------------------------------------

def _days_since(attr: str, doc: str, name: str) -> None:
    def compute(ctx: Context) -> int | None:
        at = getattr(ctx.c, attr)
        return (ctx.t - at) // DAY if at else None

    def changes(ctx: Context) -> int | None:
        at = getattr(ctx.c, attr)
        return at + ((ctx.t - at) // DAY + 1) * DAY if at else None

    def crossing(ctx: Context, value: float) -> int | None:
        at = getattr(ctx.c, attr)
        return at + max(0, math.ceil(value)) * DAY if at else None

    FEATURES[name] = Feature(name, "clock", compute, doc, changes, crossing)


_days_since("last_order", "whole days since the last order (none: never ordered)",
            "days_since_last_order")
_days_since("first_order", "whole days since the first order", "days_since_first_order")
_days_since("last_seen", "whole days since the last event", "days_since_last_visit")
_days_since("first_seen", "whole days since the first event", "days_since_first_seen")


def order_gap(ctx: Context) -> float:
    """The customer's usual time between orders (ms): their own once they ordered twice."""
    return ctx.c.order_gap or float(ctx.env.config.default_order_gap)


def _expected_days(ctx: Context) -> float | None:
    return round((ctx.c.last_order + order_gap(ctx) - ctx.t) / DAY, 2) if ctx.c.orders else None


def _overdue(ctx: Context) -> float | None:
    return round((ctx.t - ctx.c.last_order) / order_gap(ctx), 3) if ctx.c.orders else None


def _daily(ctx: Context) -> int | None:
    return ctx.t + DAY if ctx.c.orders else None


FEATURES["expected_days_to_next_order"] = Feature(
    "expected_days_to_next_order", "clock", _expected_days,
    "days until the next order is due at the customer's usual rhythm (negative: overdue; "
    "none: never ordered)", _daily,
    lambda ctx, v: int(ctx.c.last_order + order_gap(ctx) - v * DAY) if ctx.c.orders else None)
FEATURES["overdue_ratio"] = Feature(
    "overdue_ratio", "clock", _overdue,
    "time since the last order over the usual gap: the churn risk (> 1: overdue)", _daily,
    lambda ctx, v: int(ctx.c.last_order + v * order_gap(ctx)) if ctx.c.orders else None)


def _lifecycle_edges(ctx: Context) -> list[int]:
    cfg, c = ctx.env.config, ctx.c
    if not c.orders:
        return [c.first_seen + cfg.new_days * DAY]
    return [c.first_order + cfg.new_days * DAY, c.last_order + cfg.lapsed_days * DAY,
            c.last_order + cfg.churned_days * DAY]


def lifecycle(ctx: Context) -> str:
    """new (first seen or first order in the last `new_days`), active, lapsed, churned by
    the time since the last order; prospect: never ordered, first seen long ago."""
    cfg, c, t = ctx.env.config, ctx.c, ctx.t
    if not c.orders:
        return "new" if t - c.first_seen < cfg.new_days * DAY else "prospect"
    if t - c.first_order < cfg.new_days * DAY:
        return "new"
    since = t - c.last_order
    if since < cfg.lapsed_days * DAY:
        return "active"
    return "lapsed" if since < cfg.churned_days * DAY else "churned"


FEATURES["lifecycle"] = Feature(
    "lifecycle", "clock", lifecycle, "new, active, lapsed, churned or prospect",
    changes=lambda ctx: min((e for e in _lifecycle_edges(ctx) if e > ctx.t), default=None))


def engagement_score(ctx: Context) -> float:
    from nudge.state.engagement import score_at

    return round(score_at(ctx.c.engagement, ctx.t, ctx.env.config.engagement_half_life), 3)


def _engagement_crossing(ctx: Context, value: float) -> int | None:
    from nudge.state.engagement import time_score_reaches

    return time_score_reaches(ctx.c.engagement, value, ctx.env.config.engagement_half_life)


FEATURES["engagement_score"] = Feature(
    "engagement_score", "clock", engagement_score,
    "opens, clicks, sessions, cart adds and orders, weighted and decayed (half-life 30 d)",
    changes=lambda ctx: ctx.t + DAY if ctx.c.engagement is not None else None,
    crossing=_engagement_crossing)


# -- population features ----------------------------------------------------------------

def _tier(ctx: Context) -> str:
    p = ctx["engagement_percentile"]
    cfg = ctx.env.config
    if p >= 1 - cfg.top_tier:
        return "top"
    return "bottom" if p < cfg.bottom_tier else "middle"


FEATURES["engagement_percentile"] = Feature(
    "engagement_percentile", "population",
    lambda ctx: round(ctx.env.engagement_percentile(ctx.c), 4),
    "share of the shard's customers less engaged (ties count half): 0..1")
FEATURES["engagement_tier"] = Feature(
    "engagement_tier", "population", _tier, "top (25%), middle (50%) or bottom (25%)")
FEATURES["propensity"] = Feature(
    "propensity", "population", lambda ctx: round(ctx.env.propensity(ctx), 4),
    "the online model's probability of an order within the attribution window")


def model_inputs(ctx: Context) -> dict[str, float]:
    """What the propensity model sees: scaled, bounded numbers only (the same dict for
    every call on one context: scoring and attribution share it)."""
    if ctx.inputs is None:
        ctx.inputs = _inputs(ctx)
    return ctx.inputs


def _inputs(ctx: Context) -> dict[str, float]:
    since = ctx["days_since_last_order"]
    return {
        "days_since_last_order": float(min(since, 365) if since is not None else 365),
        "orders_365d": float(ctx["orders_365d"]),
        "log_spend_365d": math.log1p(ctx["spend_365d"]),
        "views_7d": float(min(ctx["views_7d"], 200)),
        "cart_adds_7d": float(min(ctx["cart_adds_7d"], 50)),
        "log_cart_value": math.log1p(ctx["cart_value"]),
        "log_engagement": math.log1p(ctx["engagement_score"]),
        "email_clicks_30d": float(min(ctx["email_clicks_30d"], 30)),
        "has_email": 1.0 if ctx.c.email else 0.0,
    }


def snapshot(ctx: Context, names: list[str] | None = None) -> dict[str, Any]:
    """Named features at ctx.t (for `nudge inspect` and templates)."""
    return {name: ctx[name] for name in (names or sorted(FEATURES))}
