"""The per-customer record and `apply_facts(customer, event)`: what an event says about them.

A record holds the profile and consent, the cart, order history, bucketed counters, the
few product ids recommendations need, and the journey, segment and attribution state. No
event lists: a customer's memory stays a few hundred bytes whatever their history. Records
are encoded to compact bytes between epochs (`encode` / `decode`: a positional MessagePack
array, via msgspec: exact for floats, and its bytes are allocated to size, where orjson's
each take 4 KiB of memory whatever their length, measured here).

What follows from the facts lives elsewhere: journeys (nudge/state/journeys.py), segments
(nudge/state/segments.py), the shard's own bookkeeping (nudge/state/shard.py).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from nudge.core.errors import SnapshotError
from nudge.core.events import Event, Kind, Traits
from nudge.core.timefmt import DAY, HOUR
from nudge.state.windows import bump, last_bucket

FORMAT: Final = 5
MAX_CART_LINES: Final = 100
MAX_CATEGORIES: Final = 32
MAX_RECENT: Final = 8  # recently viewed products (recommendation seeds, co-view pairs)
MAX_BOUGHT: Final = 20  # recently bought products (excluded from recommendations)
MAX_DECISIONS: Final = 10  # recent decisions, for `nudge inspect`
MAX_OUTCOMES: Final = 8  # sends and episodes waiting for their attribution window
MAX_UNSUBS: Final = 64  # journeys unsubscribed from by name (more than any config has)
MAX_LINKS: Final = 8  # linked anonymous ids remembered for `nudge inspect`

# Counter series: day and hour buckets ([bucket, value, ...], nudge/state/windows.py).
VIEWS: Final = "v:"  # + category: views per day
VIEWS_H: Final = "vh:"  # + category: views per hour (the 1-day windows)
ADDS: Final = "a:"  # + category: cart adds per day
ADDS_H: Final = "ah:"  # + category: cart adds per hour
ORDERS: Final = "o"  # orders per day (365 days)
SPEND: Final = "s"  # spend per day (365 days)
OPENS: Final = "eo"  # emails opened per day (30 days)
CLICKS: Final = "ec"  # email links clicked per day (30 days)


class Customer:
    """Mutable while a shard works on it; the shard owns it, nothing else holds a reference."""

    __slots__ = (
        "bought", "cart", "consent", "consent_at", "counters", "decisions", "email",
        "engagement", "first_name", "first_order", "first_seen", "journeys", "last_name",
        "last_order", "last_seen", "last_view", "links", "order_gap", "orders", "outcomes",
        "recent", "seg_due", "seg_next", "segments", "sends", "session", "spend", "timezone",
        "unsubs", "wake",
    )

    def __init__(self) -> None:
        self.email: str | None = None
        self.first_name: str | None = None
        self.last_name: str | None = None
        self.timezone: str | None = None
        self.consent: bool | None = None  # None: never stated
        self.consent_at = 0
        # journeys this customer unsubscribed from by name (`Unsubscribed` with a scope)
        self.unsubs: list[str] | tuple[()] = ()
        # product_id -> [name, price, quantity, category, image_url, url]
        self.cart: dict[str, list[Any]] = {}
        self.first_seen = 0
        self.last_seen = 0
        self.last_view = 0
        self.recent: list[str] = []  # viewed product ids, most recent last, no repeats
        self.session = 0  # how many of `recent` (the last ones) were viewed this session
        # Lists most customers never fill start as the shared empty tuple and become lists
        # when first written (below, journeys, attribution, segments): a new customer then
        # costs five containers fewer, in memory and in the garbage collector's young
        # generation. Decoded records hold lists.
        self.bought: list[str] | tuple[()] = ()  # bought product ids, most recent last
        self.orders = 0
        self.spend = 0.0
        self.first_order = 0
        self.last_order = 0
        self.order_gap: int | float = 0.0  # moving average of order gaps (ms), 0 = unknown
        self.counters: dict[str, list[Any]] = {}
        self.engagement: float | None = None  # rank key of the decayed score (engagement.py)
        # journey name -> [episode, open, anchor, next_stage, due, deferred, entries,
        #                  last_entry, last_exit]   (nudge/state/journeys.py)
        self.journeys: dict[str, list[Any]] = {}
        self.segments: list[str] | tuple[()] = ()  # names, sorted
        self.seg_due = 0  # segments are evaluated then (after activity settles); 0: not due
        self.seg_next = 0  # ... or then, when time alone may change them; 0: never
        self.sends: list[int] | tuple[()] = ()  # event times of recent sends (frequency cap)
        # [trigger, episode, stage, at, expires, inputs, arm, variant, clicked, learned]:
        # waiting for an order or expiry (nudge/state/attribution.py)
        self.outcomes: list[list[Any]] | tuple[()] = ()
        # [trigger, episode, stage, due, outcome, reason, variant], most recent last
        self.decisions: list[list[Any]] | tuple[()] = ()
        self.wake = 0  # the time of this customer's live entry in the shard's timers
        # [anonymous id, linked at, {kind: events merged}, first, last, cart product ids
        #  it brought, events after the link], most recent last (nudge/state/identity.py)
        self.links: list[list[Any]] | tuple[()] = ()


_pack = msgspec.msgpack.Encoder().encode
_unpack = msgspec.msgpack.Decoder().decode


def encode(c: Customer) -> bytes:
    """A positional array: about 40% smaller than named fields, and stable to read. Fields
    spelled out (not a loop over __slots__): this runs for every changed record at every
    snapshot."""
    return _pack([FORMAT, c.bought, c.cart, c.consent, c.consent_at, c.counters,
        c.decisions, c.email, c.engagement, c.first_name, c.first_order, c.first_seen,
        c.journeys, c.last_name, c.last_order, c.last_seen, c.last_view, c.links, c.order_gap,
        c.orders, c.outcomes, c.recent, c.seg_due, c.seg_next, c.segments, c.sends,
        c.session, c.spend, c.timezone, c.unsubs, c.wake])


def decode(data: bytes) -> Customer:
    v = _unpack(data)
    if v[0] != FORMAT:
        raise SnapshotError("a customer record", v[0], FORMAT)
    c = Customer.__new__(Customer)
    (_, c.bought, c.cart, c.consent, c.consent_at, c.counters, c.decisions, c.email,
     c.engagement, c.first_name, c.first_order, c.first_seen, c.journeys, c.last_name,
     c.last_order, c.last_seen, c.last_view, c.links, c.order_gap, c.orders, c.outcomes,
     c.recent, c.seg_due, c.seg_next, c.segments, c.sends, c.session, c.spend, c.timezone,
     c.unsubs, c.wake) = v
    return c


def cart_value(c: Customer) -> float:
    return round(sum((line[1] * line[2] for line in c.cart.values()), 0.0), 2)


def cart_items(c: Customer) -> int:
    return sum(line[2] for line in c.cart.values())


def _count(counters: dict[str, list[Any]], key: str, bucket: int, amount: int | float,
           keep: int) -> None:
    series = counters.get(key)
    if series is None:
        counters[key] = [bucket, amount]
    elif series[-2] == bucket:  # the common case, inline
        series[-1] += amount
    else:
        bump(series, bucket, amount, keep)


_KEYS: dict[str, tuple[str, str, str, str]] = {}


def _keys(category: str) -> tuple[str, str, str, str]:
    """(views per day, per hour, adds per day, per hour) series keys of a category: made
    once per category, so the hot path builds no strings and hashes no new ones."""
    keys = _KEYS.get(category)
    if keys is None:
        keys = (VIEWS + category, VIEWS_H + category, ADDS + category, ADDS_H + category)
        if len(_KEYS) < 100_000:  # a catalogue's categories; a flood of new ones is not kept
            _KEYS[category] = keys
    return keys


def _count_category(c: Customer, day_key: str, hour_key: str, ts: int) -> None:
    counters = c.counters
    day, hour = ts // DAY, ts // HOUR
    series = counters.get(day_key)
    if series is None:
        if len(counters) >= 4 * MAX_CATEGORIES:
            _forget_stalest(c, day_key[:day_key.index(":") + 1])
        counters[day_key] = [day, 1]
    elif series[-2] == day:  # the common case, inline (as in _count)
        series[-1] += 1
    else:
        bump(series, day, 1, 30)
    series = counters.get(hour_key)
    if series is None:
        counters[hour_key] = [hour, 1]
    elif series[-2] == hour:
        series[-1] += 1
    else:
        bump(series, hour, 1, 24)


def _forget_stalest(c: Customer, prefix: str) -> None:
    # Bounded memory: a customer browsing hundreds of categories keeps the most recent.
    keys = [k for k in c.counters if k.startswith(prefix)]
    if len(keys) < MAX_CATEGORIES:
        return
    stalest = min(keys, key=lambda k: (last_bucket(c.counters[k]), k))
    del c.counters[stalest]
    c.counters.pop(prefix[:-1] + "h:" + stalest[len(prefix):], None)


def _remember(items: list[str], pid: str, limit: int) -> None:
    if items and items[-1] == pid:
        return
    if pid in items:
        items.remove(pid)
    items.append(pid)
    if len(items) > limit:
        del items[0]


def apply_facts(c: Customer, ev: Event) -> None:
    """Profile, consent, counters, cart and order history. Runs in event-time order."""
    ts = ev.ts
    if ts > c.last_seen:
        c.last_seen = ts
        if not c.first_seen:
            c.first_seen = ts
    kind = ev.kind
    if kind == 1:  # Kind.PRODUCT_VIEWED, the most frequent, tested first without a lookup
        p = ev.products[0]
        keys = _keys(p.category)
        _count_category(c, keys[0], keys[1], ts)
        recent = c.recent
        if not recent or recent[-1] != p.product_id:
            _remember(recent, p.product_id, MAX_RECENT)
        c.session = min(c.session + 1, len(recent))
        c.last_view = ts
    elif kind == Kind.PRODUCT_ADDED:
        p = ev.products[0]
        line = c.cart.get(p.product_id)
        if line is not None:
            line[2] += p.quantity
            line[1] = p.price
        elif len(c.cart) < MAX_CART_LINES:
            c.cart[p.product_id] = [p.name, p.price, p.quantity, p.category, p.image_url, p.url]
        keys = _keys(p.category)
        _count_category(c, keys[2], keys[3], ts)
    elif kind == Kind.PRODUCT_REMOVED:
        p = ev.products[0]
        line = c.cart.get(p.product_id)
        if line is not None:
            line[2] -= p.quantity
            if line[2] <= 0:
                del c.cart[p.product_id]
    elif kind == Kind.ORDER_COMPLETED:
        _order(c, ev)
    elif kind == Kind.IDENTIFY:
        t = ev.traits
        if t is not None and ev.anonymous_id is not None:
            anonymous_traits(c, t, ts)
        elif t is not None:
            if t.email is not None:
                c.email = t.email
            if t.first_name is not None:
                c.first_name = t.first_name
            if t.last_name is not None:
                c.last_name = t.last_name
            if t.timezone is not None:
                c.timezone = t.timezone
            if t.marketing_consent is not None:
                c.consent = t.marketing_consent
                c.consent_at = ts
    elif kind == Kind.UNSUBSCRIBED:
        scope = ev.consent.scope if ev.consent is not None else "all"
        if scope == "all":
            c.consent = False
            c.consent_at = ts
        elif scope not in c.unsubs:
            if len(c.unsubs) >= MAX_UNSUBS:  # bounded memory, and never a consent lost:
                c.consent = False             # more scopes than journeys is "all"
                c.consent_at = ts
            else:
                c.unsubs = [*c.unsubs, scope]
    elif kind == Kind.SUBSCRIBED:
        scope = ev.consent.scope if ev.consent is not None else "all"
        if ev.anonymous_id is not None and c.consent is not None:
            pass  # through an anonymous id alone: no opt-in for a user who stated consent
        elif scope == "all":  # an explicit opt-in: to marketing and every journey
            c.consent = True
            c.consent_at = ts
            c.unsubs = ()
        elif scope in c.unsubs:
            c.unsubs = [u for u in c.unsubs if u != scope]
    elif kind == Kind.EMAIL_MARKED_SPAM:
        c.consent = False  # a complaint withdraws consent, as an unsubscribe does
        c.consent_at = ts
    elif (kind == Kind.EMAIL_OPENED or kind == Kind.EMAIL_CLICKED) and (  # noqa: PLR1714
            ev.email is None or not ev.email.machine):  # a proxy or a scanner is no person
        _count(c.counters, OPENS if kind == Kind.EMAIL_OPENED else CLICKS, ts // DAY, 1, 30)


def anonymous_traits(c: Customer, t: Traits, ts: int) -> None:
    """An identify that reached this customer through an anonymous id alone (after a link,
    or in a merged history): it fills what the customer has not said and may withdraw
    consent, but never overwrites their own profile or gives consent they have stated
    (refused, or withdrawn by an unsubscribe): an anonymous id is not the user."""
    if t.email is not None and c.email is None:
        c.email = t.email
    if t.first_name is not None and c.first_name is None:
        c.first_name = t.first_name
    if t.last_name is not None and c.last_name is None:
        c.last_name = t.last_name
    if t.timezone is not None and c.timezone is None:
        c.timezone = t.timezone
    if t.marketing_consent is False or (t.marketing_consent is True and c.consent is None):
        c.consent = t.marketing_consent
        c.consent_at = ts


def _order(c: Customer, ev: Event) -> None:
    ts = ev.ts
    c.cart.clear()
    if c.orders:
        gap = ts - c.last_order
        # An exponential moving average of the gaps, the newest weighing 1/2: the
        # "expected time to the next order" follows a customer whose rhythm changes.
        c.order_gap = gap if not c.order_gap else (c.order_gap + gap) / 2
    else:
        c.first_order = ts
    c.orders += 1
    c.spend = round(c.spend + ev.revenue, 2)
    c.last_order = ts
    _count(c.counters, ORDERS, ts // DAY, 1, 365)
    _count(c.counters, SPEND, ts // DAY, ev.revenue, 365)
    bought = c.bought if type(c.bought) is list else []
    for p in ev.products:
        _remember(bought, p.product_id, MAX_BOUGHT)
    c.bought = bought


def note_decision(c: Customer, entry: list[Any]) -> None:
    c.decisions = [*c.decisions[max(0, len(c.decisions) + 1 - MAX_DECISIONS):], entry]


__all__ = ["DAY", "HOUR", "Customer", "anonymous_traits", "apply_facts", "cart_items",
           "cart_value", "decode", "encode", "note_decision"]
