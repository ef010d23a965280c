"""Builders for Segment-spec test events (bytes lines, as producers send them)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

_ids = itertools.count(1)


def at(base: str, minutes: float = 0) -> str:
    from nudge.core.timefmt import parse_iso, to_iso

    ms = parse_iso(base) + int(minutes * 60_000)
    iso = to_iso(ms)
    return iso if "." in iso else iso[:-1] + ".000Z"


T0 = "2026-10-05T10:00:00.000Z"


def product(pid: str = "sku-1", **extra: Any) -> dict[str, Any]:
    base = {"product_id": pid, "name": f"Product {pid}", "price": 20.0, "category": "apparel",
            "image_url": f"https://shop.example/img/{pid}.jpg",
            "url": f"https://shop.example/p/{pid}"}
    base.update(extra)
    return base


def track(event: str, user: str, minutes: float, props: dict[str, Any] | None = None,
          *, base: str = T0, message_id: str | None = None) -> bytes:
    return orjson.dumps({
        "type": "track", "event": event, "userId": user,
        "messageId": message_id or f"m-{next(_ids)}",
        "timestamp": at(base, minutes), "properties": props or {},
    })


def identify(user: str, minutes: float, *, email: str | None = "x@example.com",
             consent: bool | None = True, first_name: str = "Ann", tz: str | None = None,
             base: str = T0) -> bytes:
    traits: dict[str, Any] = {"first_name": first_name}
    if email is not None:
        traits["email"] = email
    if consent is not None:
        traits["marketing_consent"] = consent
    if tz is not None:
        traits["timezone"] = tz
    return orjson.dumps({"type": "identify", "userId": user, "messageId": f"m-{next(_ids)}",
                         "timestamp": at(base, minutes), "traits": traits})


def add(user: str, minutes: float, pid: str = "sku-1", qty: int = 1, **kw: Any) -> bytes:
    return track("Product Added", user, minutes, product(pid, quantity=qty), **kw)


def remove(user: str, minutes: float, pid: str = "sku-1", qty: int = 1, **kw: Any) -> bytes:
    return track("Product Removed", user, minutes, product(pid, quantity=qty), **kw)


def order(user: str, minutes: float, revenue: float = 20.0, **kw: Any) -> bytes:
    return track("Order Completed", user, minutes,
                 {"order_id": f"o-{next(_ids)}", "revenue": revenue,
                  "products": [product("sku-1", quantity=1)]}, **kw)


def view(user: str, minutes: float, pid: str = "sku-1", category: str = "apparel",
         **kw: Any) -> bytes:
    return track("Product Viewed", user, minutes, product(pid, category=category), **kw)


def anon(event: str, anonymous_id: str, minutes: float, props: dict[str, Any] | None = None,
         *, user: str | None = None, base: str = T0, message_id: str | None = None) -> bytes:
    """A track call with an anonymousId (and a userId too, when `user` is given)."""
    doc: dict[str, Any] = {"type": "track", "event": event, "anonymousId": anonymous_id,
                           "messageId": message_id or f"m-{next(_ids)}",
                           "timestamp": at(base, minutes), "properties": props or {}}
    if user is not None:
        doc["userId"] = user
    return orjson.dumps(doc)


def anon_add(anonymous_id: str, minutes: float, pid: str = "sku-1", qty: int = 1,
             **kw: Any) -> bytes:
    return anon("Product Added", anonymous_id, minutes, product(pid, quantity=qty), **kw)


def login(user: str, anonymous_id: str, minutes: float, *, email: str | None = "x@example.com",
          consent: bool | None = True, base: str = T0) -> bytes:
    """An identify carrying both ids: the shopper logs in (Segment links them)."""
    doc = orjson.loads(identify(user, minutes, email=email, consent=consent, base=base))
    doc["anonymousId"] = anonymous_id
    return orjson.dumps(doc)


def anon_identify(anonymous_id: str, minutes: float, *, email: str | None = None,
                  consent: bool | None = True, base: str = T0) -> bytes:
    doc = orjson.loads(identify("-", minutes, email=email, consent=consent, base=base))
    del doc["userId"]
    doc["anonymousId"] = anonymous_id
    return orjson.dumps(doc)


def alias(previous_id: str, user: str, minutes: float, *, base: str = T0) -> bytes:
    return orjson.dumps({"type": "alias", "previousId": previous_id, "userId": user,
                         "messageId": f"m-{next(_ids)}", "timestamp": at(base, minutes)})
