"""One sample shopper's events: sessions of views in their waking hours, carts, orders,
comebacks, a returning customer's past, and logging in at the cart (nudge/app/sample.py
merges the shoppers into one stream)."""

from __future__ import annotations

import random
from typing import Any

from nudge.app.respond import Responder
from nudge.app.samplecatalog import CATALOGUE, CATEGORIES
from nudge.core.timefmt import DAY, HOUR, MINUTE, SECOND

FIRST = ["Ann", "Ben", "Chloé", "Dara", "Emil", "Fatima", "Giulia", "Hiro", "Ines", "José",
         "Kai", "Lena", "Łukasz", "Maya", "Noah", "Olga", "Priya", "Quentin", "Rosa", "Sven",
         "Tariq", "Uma", "Vera", "Wei", "Xavier", "Yara", "Zoë", "Amara", "Björn", "Céline"]
LAST = ["Lee", "Müller", "García", "Rossi", "Nowak", "Kim", "Dubois", "Silva", "Jensen",
        "O'Brien", "Tanaka", "Novak", "Haddad", "Okafor", "Smith", "Ivanova"]
ZONES = ["Europe/Berlin", "Europe/London", "Europe/Paris", "Europe/Madrid", "Europe/Warsaw",
         "America/New_York", "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo",
         "Asia/Tokyo", "Asia/Singapore", "Australia/Sydney", "UTC"]
ZONE_OFFSET_H = {"America/New_York": -5, "America/Chicago": -6, "America/Los_Angeles": -8,
                 "America/Sao_Paulo": -3, "Asia/Tokyo": 9, "Asia/Singapore": 8,
                 "Australia/Sydney": 10, "Europe/London": 0, "UTC": 0}



def _traits(rng: random.Random, cid: str, first: str, zone: str) -> dict[str, Any]:
    traits: dict[str, Any] = {"first_name": first, "last_name": rng.choice(LAST),
                              "timezone": zone, "marketing_consent": rng.random() > 0.08}
    if rng.random() > 0.03:
        traits["email"] = (f"{first.lower().replace('ł', 'l')}.{cid}@example.com"
                           .encode("ascii", "ignore").decode())
    return traits


def history(rng: random.Random, cid: str, start: int) -> list[tuple[int, dict[str, Any]]]:
    """A returning customer's past: identify, then one to three orders, all before `start`."""
    ident = {"userId": cid}
    t = start - rng.randint(60, 200) * DAY
    first = rng.choice(FIRST)
    out: list[tuple[int, dict[str, Any]]] = [
        (t, {"type": "identify", **ident, "traits": _traits(rng, cid, first,
                                                            rng.choice(ZONES))})]
    for _ in range(rng.choice([1, 1, 2, 3])):
        t += rng.randint(1 * HOUR, 40 * DAY)
        if t >= start - 50 * DAY:
            break
        products = [{**item, "quantity": 1} for item in rng.sample(CATALOGUE, rng.randint(1, 3))]
        value = round(sum(p["price"] for p in products), 2)
        out.append((t, _order(rng, ident, products, value)))
    return out


def customer_events(rng: random.Random, cid: str, start: int, end: int,
                     anonymous: bool, sessions_mean: float = 2.2, *,
                     returning: bool = False, responder: Responder | None = None,
                     ) -> list[tuple[int, dict[str, Any]]]:
    """One customer's history as (time, event) pairs. With a responder, the customer also
    answers the emails the flow sends them (nudge/app/respond.py)."""
    out = _Timeline(responder)
    zone = rng.choice(ZONES)
    offset = ZONE_OFFSET_H.get(zone, 1) * HOUR
    ident = {"anonymousId": cid} if anonymous else {"userId": cid}
    favourite = rng.choice(list(CATEGORIES))
    t = start
    sessions = max(1, int(rng.expovariate(1 / sessions_mean)))
    identified = returning  # a returning customer identified in their history
    consent = not anonymous
    cart: dict[str, dict[str, Any]] = {}
    first = rng.choice(FIRST)
    for _ in range(sessions):
        # sessions happen in the customer's daytime (08:00-23:00 local)
        local_hour = ((t + offset) // HOUR) % 24
        if local_hour < 8:
            t += (8 - local_hour) * HOUR + rng.randint(0, 3 * HOUR)
        if t >= end:
            break
        if out.bought_since(t):
            cart = {}  # an email's answer bought it
        if not anonymous and not identified:
            identified = True
            traits = _traits(rng, cid, first, zone)
            consent = traits["marketing_consent"] and "email" in traits
            out.append((t, {"type": "identify", **ident, "traits": traits}))
        if responder is None and consent and rng.random() < 0.35:
            # without a responder: opened one of the shop's emails now and then
            t += rng.randint(1 * MINUTE, 30 * MINUTE)
            out.append((t, {"type": "track", "event": "Email Opened", **ident,
                            "properties": {"email_subject": "From the shop"}}))
            if rng.random() < 0.3:
                t += rng.randint(5 * SECOND, 2 * MINUTE)
                out.append((t, {"type": "track", "event": "Email Link Clicked", **ident,
                                "properties": {"link_url": "https://shop.example/"}}))
        for _ in range(rng.randint(1, 6)):
            t += rng.randint(10 * SECOND, 4 * MINUTE)
            cat = favourite if rng.random() < 0.6 else rng.choice(list(CATEGORIES))
            item = rng.choice([p for p in CATALOGUE if p["category"] == cat])
            out.append((t, {"type": "track", "event": "Product Viewed", **ident,
                            "properties": dict(item)}))
            if rng.random() < 0.06:  # add-to-cart in ~15% of sessions, as in shop funnels
                t += rng.randint(5 * SECOND, 2 * MINUTE)
                qty = rng.choice([1, 1, 1, 2, 3])
                line = cart.setdefault(item["product_id"], {**item, "quantity": 0})
                line["quantity"] += qty
                out.append((t, {"type": "track", "event": "Product Added", **ident,
                                "properties": {**item, "quantity": qty}}))
        if cart and rng.random() < 0.12:
            pid = rng.choice(sorted(cart))
            t += rng.randint(10 * SECOND, 3 * MINUTE)
            line = cart.pop(pid)
            out.append((t, {"type": "track", "event": "Product Removed", **ident,
                            "properties": {k: v for k, v in line.items()}}))
        if cart:
            products = [dict(v) for v in cart.values()]
            value = round(sum(p["price"] * p["quantity"] for p in products), 2)
            t += rng.randint(20 * SECOND, 5 * MINUTE)
            out.append((t, {"type": "track", "event": "Cart Viewed", **ident,
                            "properties": {"products": products, "value": value}}))
            r = rng.random()
            if r < 0.30:  # buys now
                t += rng.randint(1 * MINUTE, 20 * MINUTE)
                out.append((t, {"type": "track", "event": "Checkout Started", **ident,
                                "properties": {"products": products, "value": value}}))
                t += rng.randint(1 * MINUTE, 10 * MINUTE)
                out.append((t, _order(rng, ident, products, value)))
                cart = {}
            elif r < 0.30 + (0.10 if responder is None else 0.70 * responder.comeback(t)):
                # comes back within hours and buys, unless an email's answer bought it first
                t2 = t + rng.randint(2 * HOUR, 30 * HOUR)
                if t2 < end:
                    if not out.bought_since(t2):
                        out.append((t2, _order(rng, ident, products, value)))
                    t = t2
                    cart = {}
        if rng.random() < 0.005 and not anonymous:
            out.append((t + MINUTE, {"type": "track", "event": "Unsubscribed", **ident,
                                     "properties": {}}))
        t += int(rng.expovariate(1 / (2 * DAY)))
    return [(ts, ev) for ts, ev in out.done(end) if ts < end]


class _Timeline(list[tuple[int, dict[str, Any]]]):
    """A customer's events; with a responder, each also goes to it, in time order, and its
    answers to the emails join the events at the end."""

    def __init__(self, responder: Responder | None) -> None:
        super().__init__()
        self.responder = responder
        self.seen_order = 0

    def append(self, item: tuple[int, dict[str, Any]]) -> None:
        super().append(item)
        if self.responder is not None:
            self.responder.event(*item)

    def bought_since(self, t: int) -> bool:
        """An answer to an email placed an order before `t` that was not seen yet."""
        r = self.responder
        if r is None:
            return False
        r.until(t)
        if r.ordered_at > self.seen_order:
            self.seen_order = r.ordered_at
            return True
        return False

    def done(self, end: int) -> list[tuple[int, dict[str, Any]]]:
        if self.responder is None:
            return list(self)
        self.responder.until(end)
        return [*self, *self.responder.answers]


_SHOP = frozenset(("Product Viewed", "Product Added", "Product Removed", "Cart Viewed",
                   "Checkout Started"))


def logs_in_at_the_cart(rng: random.Random, events: list[tuple[int, dict[str, Any]]],
                         aid: str) -> list[tuple[int, dict[str, Any]]]:
    """The shopper browses and fills the cart logged out (a browser's anonymousId), and logs
    in at the cart: an identify carrying both ids (or, for some, an identify and an `alias`).
    Shoppers who never reach a cart are left as they were."""
    first = next((i for i, (_, ev) in enumerate(events) if ev["type"] == "identify"), None)
    cart = next((i for i, (_, ev) in enumerate(events) if ev.get("event") == "Cart Viewed"),
                None)
    if first is None or cart is None or cart < first:
        return events
    t_login = events[cart][0] - rng.randint(1, 20) * SECOND
    out: list[tuple[int, dict[str, Any]]] = []
    for i, (ts, ev) in enumerate(events):
        if i == first:
            continue
        if i < cart and ev.get("event") in _SHOP:
            logged_out = {k: v for k, v in ev.items() if k != "userId"}
            logged_out["anonymousId"] = aid
            out.append((min(ts, t_login - (cart - i) * SECOND), logged_out))
        elif i == cart:
            out.append((ts, {**ev, "anonymousId": aid}))
        else:
            out.append((ts, ev))
    login = dict(events[first][1])
    if rng.random() < 0.3:
        out.append((t_login - SECOND, login))
        out.append((t_login, {"type": "alias", "previousId": aid, "userId": login["userId"]}))
    else:
        out.append((t_login, {**login, "anonymousId": aid}))
    out.sort(key=lambda x: x[0])
    return out


def _order(rng: random.Random, ident: dict[str, str], products: list[dict[str, Any]],
           value: float) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", **ident,
            "properties": {"order_id": f"o-{rng.randrange(10**9):09d}", "revenue": value,
                           "currency": "EUR", "products": products}}


