"""The per-customer record and `apply_facts(customer, event)`: what an event says about them.

A record holds the profile and consent, the cart, order history, bucketed counters, the
few product ids recommendations need, and the journey, segment and attribution state. No
event lists: a customer's memory stays a few hundred bytes whatever their history. Records
are encoded to compact bytes between epochs (`encode` / `decode`: a positional MessagePack
array led by the record's format, via msgspec: exact for floats, and its bytes are allocated
to size, where orjson's each take 4 KiB of memory whatever their length, measured here).
The fields are declared once, on the class; the parts (journey states, cart lines,
decisions) are typed records of nudge/state/parts.py, encoded by nudge/state/layout.py.

What follows from the facts lives elsewhere: journeys (nudge/state/journeys.py), segments
(nudge/state/segments.py), the shard's own bookkeeping (nudge/state/shard.py).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Final

import msgspec

from nudge.core.errors import SnapshotError
from nudge.core.events import Event, Kind, Traits
from nudge.core.timefmt import DAY, HOUR
from nudge.state.layout import Codec, assign, fields_of
from nudge.state.parts import CartLine, DecisionNote, JourneyState
from nudge.state.windows import bump, last_bucket

FORMAT: Final = 6
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
    """Mutable while a shard works on it; the shard owns it, nothing else holds a reference.
    Its fields are declared once, below: encode/decode follow them (nudge/state/layout.py)."""

    bought: list[str] | tuple[()]  # bought product ids, most recent last
    cart: dict[str, CartLine]  # product id -> line
    consent: bool | None  # None: never stated
    consent_at: int
    counters: dict[str, list[Any]]  # day and hour buckets (nudge/state/windows.py)
    decisions: list[DecisionNote] | tuple[()]  # most recent last
    email: str | None
    engagement: float | None  # rank key of the decayed score (engagement.py)
    first_name: str | None
    first_order: int
    first_seen: int
    journeys: dict[str, JourneyState]  # journey name -> state (nudge/state/journeys.py)
    last_name: str | None
    last_order: int
    last_seen: int
    last_view: int
    # [anonymous id, linked at, {kind: events merged}, first, last, cart product ids it
    #  brought, events after the link], most recent last (nudge/state/identity_records.py)
    links: list[list[Any]] | tuple[()]
    order_gap: int | float  # moving average of order gaps (ms), 0 = unknown
    orders: int
    # [trigger, episode, stage, at, expires, inputs, arm, variant, clicked, learned]:
    # waiting for an order or expiry (nudge/state/attribution.py)
    outcomes: list[list[Any]] | tuple[()]
    recent: list[str]  # viewed product ids, most recent last, no repeats
    seg_due: int  # segments are evaluated then (after activity settles); 0: not due
    seg_next: int  # ... or then, when time alone may change them; 0: never
    segments: list[str] | tuple[()]  # names, sorted
    sends: list[int] | tuple[()]  # event times of recent sends (frequency cap)
    session: int  # how many of `recent` (the last ones) were viewed this session
    spend: float
    timezone: str | None
    unsubs: list[str] | tuple[()]  # journeys unsubscribed from by name (a scoped Unsubscribed)
    wake: int  # the time of this customer's live entry in the shard's timers
    __slots__ = tuple(locals()["__annotations__"])

    def __init__(self) -> None:
        # Lists most customers never fill start as the shared empty tuple and become lists
        # when first written (below, journeys, attribution, segments): a new customer then
        # costs five containers fewer, in memory and in the garbage collector's young
        # generation. Decoded records hold lists.
        self.email = None
        self.first_name = None
        self.last_name = None
        self.timezone = None
        self.consent = None
        self.consent_at = 0
        self.unsubs = ()
        self.cart = {}
        self.first_seen = 0
        self.last_seen = 0
        self.last_view = 0
        self.recent = []
        self.session = 0
        self.bought = ()
        self.orders = 0
        self.spend = 0.0
        self.first_order = 0
        self.last_order = 0
        self.order_gap = 0.0
        self.counters = {}
        self.engagement = None
        self.journeys = {}
        self.segments = ()
        self.seg_due = 0
        self.seg_next = 0
        self.sends = ()
        self.outcomes = ()
        self.decisions = ()
        self.wake = 0
        self.links = ()


# The record's parts, by their extension code in the encoded record: stored schema, never
# reused for another class.
CODEC: Final = Codec({1: JourneyState, 2: CartLine, 3: DecisionNote})
FIELDS: Final = fields_of(Customer)
_fields = attrgetter(*FIELDS)


def encode(c: Customer) -> bytes:
    """[FORMAT, the fields by name]: positional (about 40% smaller than named fields), its
    parts as typed extension values (nudge/state/layout.py)."""
    return CODEC.encode((FORMAT, *_fields(c)))


def decode(data: bytes) -> Customer:
    """A record of this format, or of format 5 (journeys, cart lines and decisions as
    positional lists) migrated; any other raises SnapshotError."""
    found: Any = None
    try:
        v = CODEC.decode(data)
        found = v[0] if type(v) is list and v else None
        if found == FORMAT:
            c = Customer()
            assign(c, FIELDS, v[1:])
            return c
        if found == 5 and len(v) == len(FIELDS) + 1:
            return _from_format_5(v)
    except (ValueError, TypeError, msgspec.DecodeError) as exc:  # not what it says it is
        raise SnapshotError("a customer record", f"{found} (unreadable: {exc})",
                            FORMAT) from None
    raise SnapshotError("a customer record", found, FORMAT)


def _from_format_5(v: list[Any]) -> Customer:
    # Format 5 held the same fields in the same order; its parts were positional lists:
    # journeys [episode, open, anchor, next, due, deferred, entries, last_entry, last_exit],
    # cart lines [name, price, quantity, category, image_url, url], decisions [trigger,
    # episode, stage, due, outcome, reason, variant].
    c = Customer()
    assign(c, FIELDS, v[1:])
    c.cart = {pid: CartLine(category=x[3], image_url=x[4], name=x[0], price=x[1],
                            quantity=x[2], url=x[5]) for pid, x in v[2].items()}
    c.decisions = [DecisionNote(due=x[3], episode=x[1], outcome=x[4], reason=x[5], stage=x[2],
                                trigger=x[0], variant=x[6]) for x in v[6]]
    c.journeys = {name: JourneyState(anchor=x[2], deferred=bool(x[5]), due=x[4], entries=x[6],
                                     episode=x[0], last_entry=x[7], last_exit=x[8],
                                     next_stage=x[3], open=bool(x[1]))
                  for name, x in v[12].items()}
    return c


def cart_value(c: Customer) -> float:
    return round(sum((line.price * line.quantity for line in c.cart.values()), 0.0), 2)


def cart_items(c: Customer) -> int:
    return sum(line.quantity for line in c.cart.values())


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
            line.quantity += p.quantity
            line.price = p.price
        elif len(c.cart) < MAX_CART_LINES:
            c.cart[p.product_id] = CartLine(category=p.category, image_url=p.image_url,
                                            name=p.name, price=p.price, quantity=p.quantity,
                                            url=p.url)
        keys = _keys(p.category)
        _count_category(c, keys[2], keys[3], ts)
    elif kind == Kind.PRODUCT_REMOVED:
        p = ev.products[0]
        line = c.cart.get(p.product_id)
        if line is not None:
            line.quantity -= p.quantity
            if line.quantity <= 0:
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


def note_decision(c: Customer, entry: DecisionNote) -> None:
    c.decisions = [*c.decisions[max(0, len(c.decisions) + 1 - MAX_DECISIONS):], entry]


__all__ = ["DAY", "HOUR", "CartLine", "Customer", "DecisionNote", "JourneyState",
           "anonymous_traits", "apply_facts", "cart_items", "cart_value", "decode", "encode",
           "note_decision"]
