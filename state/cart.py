"""The cart-abandonment journey as pure transitions on a Customer.

Semantics (README "Cart abandonment", kept here word for word in code):
- An episode opens on Product Added when the customer has no open episode.
- Every Product Added or Product Removed in an open episode moves its last cart activity.
- A Product Removed that leaves the cart empty closes the episode without an email.
- Order Completed closes the episode: an order at or before a stage's due time cancels it.
- Stage k is due `stages[k]` after the last cart activity and is reached when event time
  passes it with the episode open. Reaching it logs one decision: sent, or suppressed with
  a reason. After the last stage the episode is complete; a later Product Added opens the
  next episode.
- Quiet hours (off by default) defer a stage due inside them to their end (or suppress it,
  with `quiet_hours.action = "suppress"`); consent, address and the cap are checked again
  when the deferred stage is reached.
"""

from __future__ import annotations

from nudge.records import (
    OUTCOME_SENT,
    OUTCOME_SUPPRESSED,
    CartLine,
    Decision,
    EmailContext,
    Event,
    Kind,
)
from state.customer import Customer, cart_value
from state.policy import QUIET_HOURS, Policy, capped, consent_block, quiet_until

TRIGGER = "cart_abandonment"


def _schedule(c: Customer, policy: Policy) -> None:
    c.due = c.last_activity + policy.stages[c.next_stage]
    c.deferred = False


def _close(c: Customer) -> None:
    c.open = False
    c.due = 0
    c.deferred = False


def on_event(c: Customer, ev: Event, policy: Policy) -> bool:
    """Move the episode for an event whose facts are already applied. True if `due` moved."""
    kind = ev.kind
    if kind == Kind.PRODUCT_ADDED:
        if not policy.cart_enabled:
            return False
        if not c.open:
            c.open = True
            c.episode += 1
            c.next_stage = 0
            c.last_activity = ev.ts
        elif ev.ts > c.last_activity:
            c.last_activity = ev.ts
        _schedule(c, policy)
        return True
    if not c.open:
        return False
    if kind == Kind.PRODUCT_REMOVED:
        if not c.cart:
            _close(c)
            return False
        c.last_activity = max(c.last_activity, ev.ts)
        _schedule(c, policy)
        return True
    if kind == Kind.ORDER_COMPLETED:
        _close(c)
    return False


def context(c: Customer) -> EmailContext:
    lines = tuple(
        CartLine(pid, line[0], line[1], line[2], line[3], line[4], line[5])
        for pid, line in c.cart.items()
    )
    return EmailContext(c.email or "", c.first_name, c.last_name, c.timezone, lines,
                        cart_value(c))


def reach(c: Customer, customer_id: str, until: int, inclusive: bool,
          policy: Policy) -> list[Decision]:
    """Reach every pending stage due before `until` (or at it, if `inclusive`), in order."""
    out: list[Decision] = []
    while c.open and c.due and (c.due < until or (inclusive and c.due == until)):
        due = c.due
        reason = consent_block(c)
        if reason is None and policy.quiet.enabled and not c.deferred:
            end = quiet_until(due, c.timezone or policy.quiet.default_timezone, policy.quiet)
            if end is not None:
                if policy.quiet.action == "defer":
                    c.due = end
                    c.deferred = True
                    continue
                reason = QUIET_HOURS
        if reason is None and capped(c, due, policy.caps):
            reason = "frequency_cap"
        stage = c.next_stage + 1
        if reason is None:
            c.sends.append(due)
            out.append(Decision(customer_id, TRIGGER, c.episode, stage, due, OUTCOME_SENT,
                                None, context(c)))
        else:
            out.append(Decision(customer_id, TRIGGER, c.episode, stage, due,
                                OUTCOME_SUPPRESSED, reason))
        c.next_stage = stage
        if stage < len(policy.stages):
            _schedule(c, policy)
            # a long deferral may have overtaken the next stage: then it is due now
            c.due = max(c.due, due)
        else:
            _close(c)
    return out
