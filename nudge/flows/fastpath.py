"""The fast parsing path: the usual records decoded and type-checked in one pass with msgspec.

Into the structs of nudge/flows/wire.py, shaped like the usual records. Anything it does not
accept gives None, and the full path (nudge/flows/fullpath.py) decides: for every record both
accept, both give the same Event (tests/test_parse.py).
"""

from __future__ import annotations

from typing import Any

import msgspec

from nudge.core.address import canonical
from nudge.core.events import CONSENT_KINDS, EMAIL_KINDS, TRACK_NAMES, Event, Kind, Product, Traits
from nudge.core.ids import ANON_PREFIX
from nudge.flows.limits import RESERVED, SINGLE_PRODUCT, Limits, blocked, to_ms, valid_timezone
from nudge.flows.wire import WireProduct, decode


def read_fast(raw: bytes, limits: Limits, offset: int, part: int) -> Event | None:
    """The usual records in one pass, or None: then the full path decides."""
    try:
        d = decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: deep nesting, which the full path names
    uid, aid = d.userId, d.anonymousId
    if uid is not None:
        if uid.startswith(RESERVED) or blocked(uid, limits) or \
                (aid is not None and blocked(aid, limits)):
            return None
        cid = uid
    elif aid is not None:
        if blocked(aid, limits):
            return None
        cid = ANON_PREFIX + aid
        aid = None  # the customer key says it all
    else:
        return None
    ev = _fast_event(d, cid, limits, offset, part)
    if ev is None or aid is None:
        return ev
    return ev.keyed(cid, aid)


def _fast_event(d: Any, cid: str, limits: Limits, offset: int, part: int) -> Event | None:
    try:
        ts = to_ms(d.timestamp)
    except (OverflowError, OSError, ValueError):
        return None
    if ts < limits.min_ts or ts > limits.max_ts:
        return None
    mid = d.messageId or ""
    if d.type == "identify":
        t = d.traits
        ctx = d.context.traits if d.context is not None else None
        if ctx is not None:
            if t is not None:
                return None  # both: the full path merges them field by field
            t = ctx
        if t is None:
            return Event(ts, cid, offset, part, Kind.IDENTIFY, mid, (), None, 0.0, Traits())
        email = canonical(t.email.strip()) if t.email is not None else None
        if (email is None and t.email is not None) or \
                (t.timezone is not None and not valid_timezone(t.timezone)):
            return None
        return Event(ts, cid, offset, part, Kind.IDENTIFY, mid, (), None, 0.0,
                     Traits(email, t.first_name, t.last_name, t.timezone,
                            t.marketing_consent))
    if d.type == "track":
        if d.event is None:
            return None
        kind = TRACK_NAMES.get(d.event)
        if kind is None:
            return None
    elif d.type in ("page", "screen"):
        if d.properties is None or d.properties.product_id is None:
            return Event(ts, cid, offset, part, Kind.PAGE, mid)
        kind = Kind.PRODUCT_VIEWED
    else:
        return None
    p = d.properties
    if kind in SINGLE_PRODUCT:
        if p is None or p.product_id is None:
            return None
        pid = p.product_id
        return Event(ts, cid, offset, part, kind, mid, (Product(
            pid, p.name or pid, p.price, p.quantity, p.category, p.image_url, p.url),))
    if kind == Kind.ORDER_COMPLETED:
        if p is None:
            return Event(ts, cid, offset, part, kind, mid, (), None, 0.0)
        if p.revenue is None and p.total is not None:
            return None  # "revenue": null beside "total": the full path's reading rules
        return Event(ts, cid, offset, part, kind, mid, _products_of(p.products), p.order_id,
                     p.revenue if p.revenue is not None else 0.0)
    if kind in (Kind.CART_VIEWED, Kind.CHECKOUT_STARTED):
        return Event(ts, cid, offset, part, kind, mid,
                     _products_of(p.products) if p is not None else ())
    if kind in EMAIL_KINDS or kind in CONSENT_KINDS:
        return None  # the email or scope they name: rare events, read by the full path
    return Event(ts, cid, offset, part, kind, mid)


def _products_of(items: list[WireProduct] | None) -> tuple[Product, ...]:
    if not items:
        return ()
    return tuple(Product(x.product_id, x.name or x.product_id, x.price, x.quantity,
                         x.category, x.image_url, x.url) for x in items)

