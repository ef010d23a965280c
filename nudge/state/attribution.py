"""Attribution: did a decision convert? The labels the propensity model learns from.

Every decision waits in its customer's record for `model.attribution_window` of event
time. An order inside the window converts it (an Outcome "converted" with the order's
revenue, and a positive example for the model); the window's end without one is a
negative. Sent and holdout decisions give Outcome records (holdout is the lift baseline);
suppressed ones only teach the model. Each order converts every window it falls in.

Entries: [trigger, episode, stage, decided, expires, inputs, arm, variant].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from nudge.core.records import OUTCOME_HOLDOUT, OUTCOME_SENT, Decision, Outcome
from nudge.state.customer import MAX_OUTCOMES, Customer

Learn = Callable[[dict[str, float], bool], Any]
# Positions in an outcome entry (Customer.outcomes); Final literals, inlined by mypyc.
TRIGGER: Final = 0
EPISODE: Final = 1
STAGE: Final = 2
DECIDED: Final = 3
EXPIRES: Final = 4
INPUTS: Final = 5
ARM: Final = 6
VARIANT: Final = 7


def open_window(c: Customer, d: Decision, window: int, inputs: dict[str, float]) -> bool:
    """Start waiting for `d`'s conversion. False if an older entry had to make room."""
    n = len(c.outcomes)
    c.outcomes = [*c.outcomes[max(0, n + 1 - MAX_OUTCOMES):],
                  [d.trigger, d.episode, d.stage, d.due, d.due + window, inputs, d.outcome,
                   d.variant]]
    return n < MAX_OUTCOMES


def _outcome(cid: str, e: list[Any], result: str, at: int, revenue: float) -> Outcome | None:
    if e[ARM] not in (OUTCOME_SENT, OUTCOME_HOLDOUT):
        return None
    return Outcome(cid, e[TRIGGER], e[EPISODE], e[STAGE], e[DECIDED], e[VARIANT], e[ARM],
                   result, at, revenue)


def on_order(c: Customer, cid: str, ts: int, revenue: float, learn: Learn | None,
             out: list[Outcome]) -> None:
    """An order at `ts` converts every window it falls in (strictly after the decision)."""
    keep = []
    for e in c.outcomes:
        if e[DECIDED] < ts <= e[EXPIRES]:
            if learn is not None:
                learn(e[INPUTS], True)
            o = _outcome(cid, e, "converted", ts, revenue)
            if o is not None:
                out.append(o)
        else:
            keep.append(e)
    c.outcomes = keep


def expire(c: Customer, cid: str, t: int, learn: Learn | None, out: list[Outcome]) -> None:
    """Windows that ended at or before `t` without an order."""
    keep = []
    for e in c.outcomes:
        if e[EXPIRES] <= t:
            if learn is not None:
                learn(e[INPUTS], False)
            o = _outcome(cid, e, "not_converted", e[EXPIRES], 0.0)
            if o is not None:
                out.append(o)
        else:
            keep.append(e)
    c.outcomes = keep


def next_expiry(c: Customer) -> int:
    return min(e[EXPIRES] for e in c.outcomes) if c.outcomes else 0
