"""A customer's transitions: `apply` an event, `advance` to an instant. Pure Python on one
record plus the shard's shared state (`Shared`); nudge/state/shard.py calls them in its one
event-time order and owns the timers.

    apply(event)     conversions of waiting decisions (an order), the facts, engagement,
                     item statistics, journeys; schedules the segment evaluation
    advance(t)       at an instant the customer asked to be woken at: attribution windows
                     that ended, then segments (which may open or close journeys), then
                     journey stages, in config order

Every output goes to `Shared.out`; the customer's next wake-up is `wake(c)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nudge.core.events import CONSENT_KINDS, EMAIL_KINDS, Event, Kind
from nudge.core.records import (
    OUTCOME_HOLDOUT,
    OUTCOME_SENT,
    AddressChange,
    Decision,
    Outcome,
    SegmentChange,
)
from nudge.scoring.itemstats import ItemStatsBuilder
from nudge.scoring.propensity import PropensityModel
from nudge.state import attribution, engagement, journeys, segments, suppression
from nudge.state import identity_records as identity
from nudge.state.customer import Customer, apply_facts
from nudge.state.features import Context, Env, model_inputs
from nudge.state.program import Program


@dataclass(slots=True)
class Out:
    decisions: list[Decision] = field(default_factory=list)
    segments: list[SegmentChange] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    addresses: list[AddressChange] = field(default_factory=list)  # nudge/state/suppression.py


class Shared:
    """What a shard's customers share: the program, the population's engagement ranks,
    the shard's propensity model and item statistics, and the outputs being collected."""

    def __init__(self, program: Program, shard: int, population: Any) -> None:
        self.program = program
        f = program.features
        self.session_gap = f.session_gap
        self.half_life = f.engagement_half_life
        self.weights = dict(f.engagement_weights)
        self.evaluate_after = f.evaluate_after
        self.ranks = engagement.EngagementRanks(lazy=not program.ranked)
        self.population = population  # () -> number of customers in the shard
        self.model: PropensityModel | None = None
        if program.model.enabled:
            self.model = PropensityModel(learning_rate=program.model.learning_rate,
                                         l2=program.model.l2, prior=program.model.prior)
        self.items: ItemStatsBuilder | None = \
            ItemStatsBuilder(shard) if program.recommendations else None
        self.env = Env(f, self._percentile, self._propensity)
        self.out = Out()
        self.dropped_windows = 0
        self.retired: list[str] = []  # anonymous records whose history moved (shard drops them)

    def _percentile(self, c: Customer) -> float:
        return self.ranks.percentile(c.engagement, self.population())

    def _propensity(self, ctx: Context) -> float:
        return self.model.score(model_inputs(ctx)) if self.model is not None else 0.0

    def learn(self, inputs: dict[str, float], converted: bool) -> None:
        if self.model is not None:
            self.model.learn(inputs, converted)


def engage(c: Customer, shared: Shared, name: str, ts: int) -> None:
    _engage(c, shared, name, ts)


def _engage(c: Customer, shared: Shared, name: str, ts: int) -> None:
    weight = shared.weights.get(name, 0.0)
    if weight:
        old = c.engagement
        c.engagement = engagement.add(old, weight, ts, shared.half_life)
        shared.ranks.replace(old, c.engagement)


def apply(c: Customer, cid: str, ev: Event, shared: Shared) -> bool:
    """Apply one event (in the shard's event-time order). True if the customer's next
    wake-up may have come earlier (a later one is found when the timer runs)."""
    program = shared.program
    kind, ts = ev.kind, ev.ts
    if kind > Kind.PAGE:
        return identity.on_record(c, cid, ev, shared)
    items = shared.items
    if ev.anonymous_id is not None:
        identity.note_later(c, ev)
    if kind == Kind.PRODUCT_VIEWED:
        if not c.last_view or ts - c.last_view > shared.session_gap:
            c.session = 0
            _engage(c, shared, "session", ts)
        if items is not None:
            items.on_view(ts, ev.products[0], c.recent[-c.session:] if c.session else [])
    elif kind == Kind.ORDER_COMPLETED:
        if c.outcomes:
            attribution.on_order(c, cid, ts, ev.revenue,
                                 shared.learn if shared.model is not None else None,
                                 shared.out.outcomes, program.attribution)
        if items is not None:
            items.on_order(ts, ev.products, c.recent[-c.session:] if c.session else [])
        _engage(c, shared, "order", ts)
    elif kind == Kind.PRODUCT_ADDED:
        if items is not None:
            items.on_add(ts, ev.products[0])
        _engage(c, shared, "cart_add", ts)
    elif kind in EMAIL_KINDS:
        ref = ev.email
        if ref is None or not ref.machine:  # a proxy's open or a scanner's click: no person
            if kind == Kind.EMAIL_OPENED:
                _engage(c, shared, "email_opened", ts)
            elif kind == Kind.EMAIL_CLICKED:
                _engage(c, shared, "email_clicked", ts)
            if ref is not None:
                attribution.engage(c, cid, kind, ts, ref, shared.out.outcomes)
    elif kind == Kind.PAGE and (not c.last_seen or ts - c.last_seen > shared.session_gap):
        _engage(c, shared, "session", ts)  # a page view opens a session as a product view does
    if kind == Kind.IDENTIFY or kind in CONSENT_KINDS:
        was = c.consent
        apply_facts(c, ev)
        found = suppression.changes(c, cid, ev, was)
        if found:
            shared.out.addresses.extend(found)
    else:
        apply_facts(c, ev)
    jk = program.journey_kinds
    moved = (jk is None or kind in jk) and journeys.on_event(c, ev, shared.env, program)
    if program.segments and not c.seg_due:
        c.seg_due = ts + shared.evaluate_after
        return True
    return moved


def advance(c: Customer, cid: str, t: int, shared: Shared) -> None:
    """Everything of this customer due at or before `t`."""
    program = shared.program
    out = shared.out
    if c.outcomes and attribution.next_expiry(c) <= t:
        attribution.expire(c, cid, t, shared.learn if shared.model is not None else None,
                           out.outcomes, program.attribution)
    ctx = Context(c, t, shared.env)
    if (c.seg_due and c.seg_due <= t) or (c.seg_next and c.seg_next <= t):
        changes, nxt = segments.evaluate(c, cid, ctx, program)
        c.seg_due = 0
        c.seg_next = nxt or 0
        if changes:
            out.segments.extend(changes)
            journeys.on_segments(c, [x.segment for x in changes if x.change == "entered"],
                                 [x.segment for x in changes if x.change == "exited"], t,
                                 program)
    first = len(out.decisions)
    journeys.reach(c, cid, t, ctx, program, out.decisions)
    window = program.model.attribution_window
    for d in out.decisions[first:]:
        inputs = model_inputs(ctx) if shared.model is not None else {}
        if (shared.model is not None or d.outcome in (OUTCOME_SENT, OUTCOME_HOLDOUT)) \
                and not attribution.open_window(c, d, window, inputs):
            shared.dropped_windows += 1


def wake(c: Customer) -> int:
    """The next instant this customer needs `advance` (0: none)."""
    times = [t for t in (journeys.next_due(c), c.seg_due, c.seg_next,
                         attribution.next_expiry(c)) if t]
    return min(times) if times else 0
