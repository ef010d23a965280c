"""Attribution: which decision an order is credited to, and the labels the propensity model
learns from.

Every sent or holdout decision (and, while the model learns, every suppressed one) waits in
its customer's record for `model.attribution_window` of event time from its due time. A
holdout decision's due time is when its email would have been sent, so held-out customers
run on the same clock as the customers who got it, and lift compares like with like.

One order, one credit (`attribution.model`):
  - `last_touch` (default): of the sent and holdout decisions whose window holds the order,
    the latest; a decision whose email the customer clicked (a person, not a link scanner)
    before the order ranks above one that was only sent, the latest click first;
  - `first_touch`: the earliest (the first click, else the first send);
  - `none`: no decision is credited and no conversion outcome is written.
The credited decision gives an Outcome "converted" with the order's revenue and its window
closes; the others stay open for a later order and end "not_converted". The model's label
is not a credit: every window an order falls in is a positive example, once.

Engagement events that name their email (`Email Delivered`, `Email Opened`, `Email Link
Clicked`) give Outcomes "delivered", "opened", "clicked" for the report's funnel.

Entries: [trigger, episode, stage, decided, expires, inputs, arm, variant, clicked, learned].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from nudge.core.events import EmailRef, Kind
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
CLICKED: Final = 8  # the time of the last person's click on the email, 0: none
LEARNED: Final = 9  # the model has learned this window's (positive) label

LAST_TOUCH: Final = "last_touch"
FIRST_TOUCH: Final = "first_touch"
NO_CREDIT: Final = "none"
ENGAGEMENT: Final = {Kind.EMAIL_OPENED: "opened", Kind.EMAIL_CLICKED: "clicked",
                     Kind.EMAIL_DELIVERED: "delivered"}


def open_window(c: Customer, d: Decision, window: int, inputs: dict[str, float]) -> bool:
    """Start waiting for `d`'s conversion. False if an older entry had to make room."""
    n = len(c.outcomes)
    c.outcomes = [*c.outcomes[max(0, n + 1 - MAX_OUTCOMES):],
                  [d.trigger, d.episode, d.stage, d.due, d.due + window, inputs, d.outcome,
                   d.variant, 0, False]]
    return n < MAX_OUTCOMES


def _creditable(e: list[Any]) -> bool:
    return e[ARM] in (OUTCOME_SENT, OUTCOME_HOLDOUT)


def _outcome(cid: str, e: list[Any], result: str, at: int, revenue: float) -> Outcome:
    return Outcome(cid, e[TRIGGER], e[EPISODE], e[STAGE], e[DECIDED], e[VARIANT], e[ARM],
                   result, at, revenue)


def credited(candidates: list[list[Any]], model: str) -> int:
    """The position in `candidates` (entries whose window holds the order, in the order they
    were opened) of the one the order is credited to; -1 for none.

    >>> a = ["cart", 1, 1, 100, 900, {}, "sent", None, 0, False]
    >>> b = ["cart", 1, 2, 200, 1000, {}, "sent", None, 0, False]
    >>> credited([a, b], "last_touch"), credited([a, b], "first_touch")
    (1, 0)
    >>> a[CLICKED] = 150  # a click ranks above a later send
    >>> credited([a, b], "last_touch")
    0
    """
    if model == NO_CREDIT:
        return -1
    best = -1
    best_key = (0, 0)
    for i, e in enumerate(candidates):
        if not _creditable(e):
            continue
        clicked: int = e[CLICKED]
        key = (1, clicked) if clicked else (0, e[DECIDED])
        if best < 0:
            best, best_key = i, key
        elif model == FIRST_TOUCH:
            if key[0] > best_key[0] or (key[0] == best_key[0] and key[1] < best_key[1]):
                best, best_key = i, key
        elif key >= best_key:  # last touch: the latest; at a tie, the last opened
            best, best_key = i, key
    return best


def on_order(c: Customer, cid: str, ts: int, revenue: float, learn: Learn | None,
             out: list[Outcome], model: str) -> None:
    """An order at `ts`: every window it falls in (strictly after the decision) learns a
    positive label once; one of them is credited (`model`)."""
    candidates = [e for e in c.outcomes if e[DECIDED] < ts <= e[EXPIRES]]
    if not candidates:
        return
    if learn is not None:
        for e in candidates:
            if not e[LEARNED]:
                learn(e[INPUTS], True)
    for e in candidates:
        e[LEARNED] = True
    best = credited(candidates, model)
    win = candidates[best] if best >= 0 else None
    if win is not None:
        out.append(_outcome(cid, win, "converted", ts, revenue))
    # the credited window closes; so do windows kept only for the model's label
    c.outcomes = [e for e in c.outcomes
                  if e is not win and (_creditable(e) or not e[LEARNED])]
    if model == NO_CREDIT:
        c.outcomes = [e for e in c.outcomes if not e[LEARNED]]


def engage(c: Customer, cid: str, kind: int, ts: int, ref: EmailRef,
           out: list[Outcome]) -> None:
    """A person's delivery, open or click of an email: an engagement Outcome, and a click
    marks the email's window so attribution ranks it first. The email is the latest sent
    decision of the ref's journey and stage (and episode, when the key names it) due at or
    before `ts`; without an open window the ref's own episode and journey are used."""
    if ref.machine:
        return
    name = ENGAGEMENT.get(kind)
    if name is None:
        return
    match: list[Any] | None = None
    for e in c.outcomes:
        if e[ARM] == OUTCOME_SENT and e[TRIGGER] == ref.trigger and e[STAGE] == ref.stage \
                and e[DECIDED] <= ts and (not ref.episode or e[EPISODE] == ref.episode) \
                and (match is None or e[DECIDED] >= match[DECIDED]):
            match = e
    if match is not None:
        if name == "clicked":
            match[CLICKED] = ts
        out.append(_outcome(cid, match, name, ts, 0.0))
    elif ref.episode:
        out.append(Outcome(cid, ref.trigger, ref.episode, ref.stage, 0, ref.variant,
                           OUTCOME_SENT, name, ts, 0.0))


def expire(c: Customer, cid: str, t: int, learn: Learn | None, out: list[Outcome],
           model: str) -> None:
    """Windows that ended at or before `t` without a credited order."""
    keep = []
    for e in c.outcomes:
        if e[EXPIRES] <= t:
            if learn is not None and not e[LEARNED]:
                learn(e[INPUTS], False)
            if _creditable(e) and model != NO_CREDIT:
                out.append(_outcome(cid, e, "not_converted", e[EXPIRES], 0.0))
        else:
            keep.append(e)
    c.outcomes = keep


def next_expiry(c: Customer) -> int:
    return min(e[EXPIRES] for e in c.outcomes) if c.outcomes else 0
