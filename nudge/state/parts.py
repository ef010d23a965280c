"""The typed parts of a customer record (nudge/state/customer.py): a journey's state, a cart
line, a remembered decision. Each declares its fields once, as annotations; `__slots__` are
those names, and nudge/state/layout.py encodes and decodes them from that declaration.
Compiled by mypyc, each is a native class with its int fields unboxed.
"""

from __future__ import annotations

from typing import Any


class JourneyState:
    """One journey of one customer (nudge/state/journeys.py): its current or last episode."""

    anchor: int  # what the stages' delays count from (moved by `restart_on` events)
    deferred: bool  # the due stage was deferred to the end of quiet hours
    due: int  # when the next stage is reached (0: not scheduled)
    entries: int  # entry events in this episode (armed at the journey's `min_entries`)
    episode: int  # 1, 2, ...: episodes opened so far
    last_entry: int  # when the episode opened
    last_exit: int  # when the last episode closed (0: none has)
    next_stage: int  # index of the next stage
    open: bool
    __slots__ = tuple(locals()["__annotations__"])

    def __init__(self, anchor: int, deferred: bool, due: int, entries: int, episode: int,
                 last_entry: int, last_exit: int, next_stage: int, open: bool) -> None:
        self.anchor = anchor
        self.deferred = deferred
        self.due = due
        self.entries = entries
        self.episode = episode
        self.last_entry = last_entry
        self.last_exit = last_exit
        self.next_stage = next_stage
        self.open = open

    def __repr__(self) -> str:
        return _repr(self)


class CartLine:
    """A product in the cart, as the customer's own events described it."""

    category: str
    image_url: str
    name: str
    price: float
    quantity: int
    url: str
    __slots__ = tuple(locals()["__annotations__"])

    def __init__(self, category: str, image_url: str, name: str, price: float, quantity: int,
                 url: str) -> None:
        self.category = category
        self.image_url = image_url
        self.name = name
        self.price = price
        self.quantity = quantity
        self.url = url

    def __repr__(self) -> str:
        return _repr(self)


class DecisionNote:
    """A decision taken for the customer, kept for `nudge inspect` (most recent last)."""

    due: int
    episode: int
    outcome: str
    reason: str | None
    stage: int
    trigger: str
    variant: str | None
    __slots__ = tuple(locals()["__annotations__"])

    def __init__(self, due: int, episode: int, outcome: str, reason: str | None, stage: int,
                 trigger: str, variant: str | None) -> None:
        self.due = due
        self.episode = episode
        self.outcome = outcome
        self.reason = reason
        self.stage = stage
        self.trigger = trigger
        self.variant = variant

    def __repr__(self) -> str:
        return _repr(self)


def _repr(obj: Any) -> str:
    from nudge.state.layout import fields_of

    inner = ", ".join(f"{n}={getattr(obj, n)!r}" for n in fields_of(type(obj)))
    return f"{type(obj).__name__}({inner})"
