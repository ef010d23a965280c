"""What the identity step's records do to a customer (nudge/state/identity.py sends them).

    MERGE   an anonymous id's history, at the instant of its link to this user: its events
            run on the user's record in their own event-time order, as if they had happened
            under the user's id (facts, cart, views, engagement, journeys), then any stage
            those events made due before the link is due at the link (the shopper is
            reminded of the merged cart, not silently skipped). What the history says of
            the profile only fills gaps, and consent it gives counts only for a user who
            never stated theirs (customer.anonymous_traits): an anonymous id never changes
            a known user's consent by itself. Shared statistics (item co-views, the
            propensity model's outcomes) are not counted twice: the anonymous customer
            already counted them.
    RETIRE  the anonymous customer whose history moved: its open journeys close without a
            decision and the shard drops the record.

The record keeps where its history came from: per linked anonymous id, when, how many events
of each kind, their time span, the cart lines it brought (merged, or added through it after
the link) and the events after the link (`nudge inspect`).
"""

from __future__ import annotations

from typing import Any, Final

from nudge.core.events import Event, Kind
from nudge.state import engagement, journeys
from nudge.state.customer import (
    MAX_CART_LINES,
    MAX_LINKS,
    Customer,
    anonymous_traits,
    apply_facts,
)

NAMES: Final = {
    Kind.PRODUCT_VIEWED: "product_viewed", Kind.PRODUCT_ADDED: "product_added",
    Kind.PRODUCT_REMOVED: "product_removed", Kind.CART_VIEWED: "cart_viewed",
    Kind.CHECKOUT_STARTED: "checkout_started", Kind.ORDER_COMPLETED: "order_completed",
    Kind.IDENTIFY: "identify", Kind.UNSUBSCRIBED: "unsubscribed",
    Kind.EMAIL_OPENED: "email_opened", Kind.EMAIL_CLICKED: "email_clicked", Kind.PAGE: "page",
}
# Positions in a link entry (Customer.links).
ANON: Final = 0
LINKED_AT: Final = 1
KINDS: Final = 2
FIRST: Final = 3
LAST: Final = 4
CART: Final = 5
LATER: Final = 6

_ENGAGE: Final = {Kind.PRODUCT_ADDED: "cart_add", Kind.ORDER_COMPLETED: "order",
                  Kind.EMAIL_OPENED: "email_opened", Kind.EMAIL_CLICKED: "email_clicked"}


def on_record(c: Customer, cid: str, ev: Event, shared: Any) -> bool:
    if ev.kind == Kind.MERGE:
        merge(c, ev, shared)
        return True
    if ev.kind == Kind.RETIRE:
        for st in c.journeys.values():
            if st.open:
                journeys.close(st, ev.ts)
        shared.ranks.replace(c.engagement, None)
        c.engagement = None
        c.wake = c.seg_due = c.seg_next = 0
        c.outcomes = ()
        shared.retired.append(cid)
    return False


def _engage(c: Customer, shared: Any, name: str, ts: int) -> None:
    weight = shared.weights.get(name, 0.0)
    if weight:
        old = c.engagement
        c.engagement = engagement.add(old, weight, ts, shared.half_life)
        shared.ranks.replace(old, c.engagement)


def merge(c: Customer, ev: Event, shared: Any) -> None:
    program = shared.program
    env = shared.env
    kinds: dict[str, int] = {}
    cart_before = set(c.cart)
    last_view, last_seen = c.last_view, c.last_seen
    jk = program.journey_kinds
    seen = last_seen  # the session clock of the replay: the user's own, then the history's
    for h in ev.history:
        kind, ts = h.kind, h.ts
        if kind in (Kind.PRODUCT_VIEWED, Kind.PAGE):
            if not seen or ts - seen > shared.session_gap:
                _engage(c, shared, "session", ts)
        elif kind in _ENGAGE:
            _engage(c, shared, _ENGAGE[kind], ts)
        seen = max(seen, ts)
        if kind == Kind.IDENTIFY:
            if h.traits is not None:
                anonymous_traits(c, h.traits, ts)
        elif kind == Kind.ERASURE_REQUESTED:
            continue  # the anonymous record's own erasure, done in its shard
        elif kind == Kind.SUBSCRIBED and c.consent is not None:
            continue  # an opt-in from the anonymous session: not for a user who stated theirs
        else:
            apply_facts(c, h)
        if jk is None or kind in jk:
            journeys.on_event(c, h, env, program)
        name = NAMES.get(kind, str(kind))
        kinds[name] = kinds.get(name, 0) + 1
    c.last_view = max(c.last_view, last_view)  # the history is older than the link
    at = ev.ts
    for st in c.journeys.values():
        # Stages the history made due before the link are due at it, later stages keep
        # their spacing.
        if st.open and st.due and st.due < at:
            st.anchor += at - st.due
            st.due = at
    if program.segments and not c.seg_due:
        c.seg_due = at + shared.evaluate_after
    history = ev.history
    entry = [ev.anonymous_id or "", at, kinds, history[0].ts if history else at,
             history[-1].ts if history else at, sorted(set(c.cart) - cart_before), 0]
    links = list(c.links)
    links.append(entry)
    c.links = links[-MAX_LINKS:]


def note_later(c: Customer, ev: Event) -> None:
    """An event that reached the user through a linked anonymous id (for inspection)."""
    x = ev.anonymous_id or ""
    entry = next((e for e in reversed(c.links) if e[ANON] == x), None)
    if entry is None:  # linked before this record's memory
        entry = [x, 0, {}, 0, 0, [], 0]
        c.links = [*c.links, entry][-MAX_LINKS:]
    entry[LATER] += 1
    if ev.kind == Kind.PRODUCT_ADDED:
        pid = ev.products[0].product_id
        if pid not in entry[CART] and len(entry[CART]) < MAX_CART_LINES:
            entry[CART].append(pid)
