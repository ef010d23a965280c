"""Segment membership: evaluate a customer's rules at an event time, report the changes.

When a customer is evaluated (nudge/state/shard.py decides when: `features.evaluate_after` after
activity, so a burst of events costs one evaluation; and at the next instant time alone may
change a rule, which each rule computes, nudge/state/rules.py), every rule is tested at that
instant; entering and leaving are SegmentChange records with that instant as `at`.

>>> from nudge.core.config import load_text
>>> from nudge.state.features import Context, Env
>>> from nudge.state.customer import Customer
>>> from nudge.state.program import compile_program
>>> program = compile_program(load_text('[segments.vip]\\nrule = "orders_total >= 1"'))
>>> c = Customer(); c.orders, c.first_order, c.last_order = 1, 5, 5
>>> changes, when = evaluate(c, "c1", Context(c, 10, Env()), program)
>>> [(ch.segment, ch.change) for ch in changes], c.segments, when
([('vip', 'entered')], ['vip'], None)
"""

from __future__ import annotations

from nudge.core.records import SegmentChange
from nudge.state.customer import Customer
from nudge.state.features import Context
from nudge.state.program import Program


def evaluate(c: Customer, cid: str, ctx: Context,
             program: Program) -> tuple[list[SegmentChange], int | None]:
    """Test every rule at ctx.t; update c.segments. Returns the changes and the next
    instant time alone may change a rule (None: only an event can)."""
    now = []
    nexts = []
    for name, rule in program.segments:
        if rule.test(ctx):
            now.append(name)
        nxt = rule.next_change(ctx)
        if nxt is not None and nxt > ctx.t:  # never "now" again: that would never end
            nexts.append(nxt)
    before = c.segments
    changes: list[SegmentChange] = []
    if now != list(before):
        t = ctx.t
        old, new = set(before), set(now)
        changes = [SegmentChange(cid, s, "exited", t) for s in before if s not in new]
        changes += [SegmentChange(cid, s, "entered", t) for s in now if s not in old]
        c.segments = now
    return changes, (min(nexts) if nexts else None)
