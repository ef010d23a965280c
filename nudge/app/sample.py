"""Realistic shopper traffic as Segment-spec JSON lines: the demo sample and the benchmark.

Deterministic: the same arguments give the same bytes (one seeded Random, no wall clock).
Customers arrive over the period; each has sessions of product views during their waking
hours, some add to cart, some remove, some buy at once, most abandon and a few come back
later and buy. Identify calls carry names (non-ASCII included), timezones and consent.
Some customers are returning ones: their identify and one to three orders lie 60 to 200
days before the period (lapsed customers for the win-back journey), and some of them come
back. Shoppers answer the emails the demo config sends them (nudge/app/respond.py): they
open, click and buy at the rates published benchmarks report, more when their features
show intent, so the emails have a real, modest lift over the holdout.

    python -m nudge.app.sample OUT.jsonl --customers 1500 --days 7 --seed 7 --bad-ratio 0.003
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from nudge.app.respond import Responder, demo_program
from nudge.core.timefmt import DAY, HOUR, MINUTE, SECOND, parse_iso, to_iso

CATEGORIES = {
    "apparel": (["Linen Shirt", "Merino Sweater", "Denim Jacket", "Rain Parka", "Wool Scarf",
                 "Cotton Tee", "Chino Trousers", "Silk Blouse"], (19, 180)),
    "shoes": (["Leather Sneakers", "Trail Runners", "Chelsea Boots", "Canvas Slip-ons",
               "Suede Loafers"], (45, 220)),
    "kitchen": (["Ceramic Pour-Over Set", "Cast Iron Skillet", "Chef's Knife", "Oak Cutting Board",
                 "Espresso Cups (4)", "Linen Tea Towels"], (12, 160)),
    "home": (["Wool Throw", "Stoneware Vase", "Linen Duvet Cover", "Scented Candle",
              "Table Lamp"], (18, 240)),
    "beauty": (["Rose Face Oil", "Clay Mask", "Hand Cream Trio", "Bamboo Hairbrush"], (9, 65)),
    "outdoor": (["Insulated Bottle", "Daypack 22L", "Camping Mug", "Merino Beanie",
                 "Trekking Poles"], (15, 140)),
    "books": (["The Slow Kitchen", "Field Guide to Birds", "Atlas of Islands",
               "Notes on Craft"], (12, 45)),
    "toys": (["Wooden Train Set", "Stacking Rings", "Puzzle 1000", "Plush Fox"], (10, 80)),
}
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


@dataclass(frozen=True, slots=True)
class SampleStats:
    events: int
    customers: int
    bad: int
    duplicates: int
    by_event: dict[str, int] = field(default_factory=dict)


def _catalogue() -> list[dict[str, Any]]:
    rng = random.Random(1)  # the catalogue is the same for every seed
    items = []
    n = 0
    for category, (names, (lo, hi)) in CATEGORIES.items():
        for name in names:
            for variant in ("", " (Sand)", " (Navy)", " (Olive)"):
                n += 1
                pid = f"sku-{n:04d}"
                items.append({"product_id": pid, "name": name + variant,
                              "price": round(rng.uniform(lo, hi), 2), "category": category,
                              "image_url": f"https://shop.example/img/{pid}.jpg",
                              "url": f"https://shop.example/p/{pid}"})
    return items


CATALOGUE = _catalogue()
# The Google Merchant feed columns of the demo's catalog (nudge/data/catalog.csv).
CATALOG_COLUMNS = ["id", "title", "price", "sale_price", "availability", "link", "image_link",
                   "product_type", "brand"]


def catalog_csv() -> str:
    """The shop's product feed for the sample's products, as a Google Merchant CSV: a few on
    sale, a few out of stock (never recommended)."""
    from nudge.sources.catalogfiles import csv_text

    rows = [{"id": p["product_id"], "title": p["name"], "price": f"{p['price']:.2f} EUR",
             "sale_price": f"{p['price'] * 0.8:.2f} EUR" if n % 9 == 4 else "",
             "availability": "out of stock" if n % 17 == 16 else "in stock",
             "link": p["url"], "image_link": p["image_url"], "product_type": p["category"],
             "brand": "Nudge Demo"}
            for n, p in enumerate(CATALOGUE)]
    return csv_text(rows, CATALOG_COLUMNS)


def _traits(rng: random.Random, cid: str, first: str, zone: str) -> dict[str, Any]:
    traits: dict[str, Any] = {"first_name": first, "last_name": rng.choice(LAST),
                              "timezone": zone, "marketing_consent": rng.random() > 0.08}
    if rng.random() > 0.03:
        traits["email"] = (f"{first.lower().replace('ł', 'l')}.{cid}@example.com"
                           .encode("ascii", "ignore").decode())
    return traits


def _history(rng: random.Random, cid: str, start: int) -> list[tuple[int, dict[str, Any]]]:
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


def _customer_events(rng: random.Random, cid: str, start: int, end: int,
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


def _logs_in_at_the_cart(rng: random.Random, events: list[tuple[int, dict[str, Any]]],
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


BAD = [
    ("truncated", lambda r: b'{"type":"track","event":"Product Viewed","userId":"c1","timest'),
    ("invalid_utf8", lambda r: b'{"type":"track","event":"Product \xc3\x28"}'),
    ("array", lambda r: b'[{"type":"track"}]'),
    ("number", lambda r: b"42"),
    ("unknown_type", lambda r: b'{"type":"pageview","userId":"c1",'
                               b'"timestamp":"2026-10-05T10:00:00Z"}'),
    ("unknown_event", lambda r: b'{"type":"track","event":"Wishlist Shared","userId":"c1",'
                                b'"timestamp":"2026-10-05T10:00:00Z"}'),
    ("missing_id", lambda r: b'{"type":"track","event":"Product Viewed",'
                             b'"timestamp":"2026-10-05T10:00:00Z","properties":{}}'),
    ("missing_timestamp", lambda r: b'{"type":"track","event":"Product Viewed","userId":"c1"}'),
    ("bad_timestamp", lambda r: b'{"type":"track","event":"Product Viewed","userId":"c1",'
                                b'"timestamp":"last tuesday"}'),
    ("naive_timestamp", lambda r: b'{"type":"track","event":"Product Viewed","userId":"c1",'
                                  b'"timestamp":"2026-10-05T10:00:00"}'),
    ("price_string", lambda r: b'{"type":"track","event":"Product Added","userId":"c1",'
                               b'"timestamp":"2026-10-05T10:00:00Z","properties":'
                               b'{"product_id":"sku-1","price":"12.50"}}'),
    ("negative_quantity", lambda r: b'{"type":"track","event":"Product Added","userId":"c1",'
                                    b'"timestamp":"2026-10-05T10:00:00Z","properties":'
                                    b'{"product_id":"sku-1","quantity":-2}}'),
    ("properties_not_object", lambda r: b'{"type":"track","event":"Product Viewed",'
                                        b'"userId":"c1","timestamp":"2026-10-05T10:00:00Z",'
                                        b'"properties":"sku-1"}'),
    ("empty", lambda r: b""),
    ("oversize", lambda r: b'{"type":"track","event":"Product Viewed","userId":"c1",'
                           b'"timestamp":"2026-10-05T10:00:00Z","properties":{"name":"'
                           + b"x" * 70_000 + b'"}}'),
]


def iter_events(*, customers: int, days: float = 7, seed: int = 7,
                start: str = "2026-10-05T00:00:00Z", bad_ratio: float = 0.0,
                anonymous_share: float = 0.05, duplicate_ratio: float = 0.002,
                login_share: float = 0.0, sessions_mean: float = 2.2,
                returning_share: float = 0.15, comeback_share: float = 0.3,
                respond: bool = False,
                stats: Counter[str] | None = None) -> Iterator[bytes]:
    """Lines in time order. Memory stays small: customers are generated lazily as their
    first event comes due and merged by time with a heap. With `respond`, shoppers answer
    the emails the demo config sends them (nudge/app/respond.py); without, they open and
    click now and then, unrelated to any email (cheaper: the benchmark's streams)."""
    rng = random.Random(seed)
    t0 = parse_iso(start)
    end = t0 + int(days * DAY)
    counts = stats if stats is not None else Counter()
    arrivals = sorted(rng.randint(t0, end - HOUR) for _ in range(customers))
    heap: list[tuple[int, int, int, dict[str, Any]]] = []
    seq = 0
    next_customer = 0
    recent: list[bytes] = []
    # Returning customers' past comes first (it is older than everything else); their
    # arrival in the period is a comeback, for some of them.
    hrng = random.Random(seed * 7919 + 1)
    returning = {i for i in range(customers) if hrng.random() < returning_share}
    histories: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for i in sorted(returning):
        histories[i] = _history(hrng, f"c{i:07d}", t0)
        for ts, ev in histories[i]:
            seq += 1
            heapq.heappush(heap, (ts, seq, i, ev))
    program = demo_program() if respond else None

    def admit(until: int) -> None:
        nonlocal next_customer, seq
        while next_customer < customers and arrivals[next_customer] <= until:
            i = next_customer
            next_customer += 1
            crng = random.Random(rng.random())
            back = i in returning
            responder = None
            if program is not None:
                # answers draw from their own generator: the shopping stays as it was
                responder = Responder(program, f"c{i:07d}", random.Random(crng.random()),
                                      CATALOGUE)
                for ts, ev in histories.get(i, ()):
                    responder.event(ts, ev)
            if back and crng.random() > comeback_share:
                if responder is not None:  # lapsed and stays away, but answers emails
                    responder.until(end)
                    for ts, ev in responder.answers:
                        if ts < end:
                            seq += 1
                            heapq.heappush(heap, (ts, seq, i, ev))
                continue
            anon = not back and crng.random() < anonymous_share
            cid = f"anon-{i:07d}" if anon else f"c{i:07d}"
            events = _customer_events(crng, cid, arrivals[i], end, anon, sessions_mean,
                                      returning=back, responder=None if anon else responder)
            # Its own generator, so the other shoppers' streams stay as they were.
            lrng = random.Random(seed * 1_000_003 + i)
            if not anon and not back and lrng.random() < login_share:
                events = _logs_in_at_the_cart(lrng, events, f"a-{i:07d}-{lrng.randrange(99)}")
            for ts, ev in events:
                seq += 1
                heapq.heappush(heap, (ts, seq, i, ev))

    while next_customer < customers or heap:
        # every customer's events start at their arrival: admitting all arrivals up to the
        # heap's top before popping keeps the output in time order
        admit(heap[0][0] if heap else arrivals[next_customer])
        if not heap:
            continue
        ts, n, _, ev = heapq.heappop(heap)
        ev["messageId"] = f"m-{seed}-{n:09d}"
        ev["timestamp"] = to_iso(ts) if ts % 1000 else to_iso(ts)[:-1] + ".000Z"
        line = orjson.dumps(ev)
        counts[ev.get("event", ev["type"])] += 1
        counts["events"] += 1
        yield line
        recent.append(line)
        if len(recent) > 50:
            recent.pop(0)
        if duplicate_ratio and rng.random() < duplicate_ratio:
            counts["duplicates"] += 1
            yield rng.choice(recent)
        if bad_ratio and rng.random() < bad_ratio:
            name, make = rng.choice(BAD)
            counts["bad"] += 1
            counts[f"bad:{name}"] += 1
            yield make(rng)
    counts["customers"] = customers


def generate(out: Path | IO[bytes], *, customers: int, days: float = 7, seed: int = 7,
             start: str = "2026-10-05T00:00:00Z", bad_ratio: float = 0.0,
             anonymous_share: float = 0.05, duplicate_ratio: float = 0.002,
             respond: bool = True, login_share: float = 0.25) -> SampleStats:
    counts: Counter[str] = Counter()
    lines = iter_events(customers=customers, days=days, seed=seed, start=start,
                        bad_ratio=bad_ratio, anonymous_share=anonymous_share,
                        login_share=login_share, duplicate_ratio=duplicate_ratio,
                        respond=respond, stats=counts)
    if isinstance(out, Path):
        if out.suffix == ".gz":
            import gzip

            with gzip.open(out, "wb") as gz:
                for line in lines:
                    gz.write(line + b"\n")
        else:
            with out.open("wb") as f:
                for line in lines:
                    f.write(line + b"\n")
    else:
        for line in lines:
            out.write(line + b"\n")
    by_event = {k: v for k, v in counts.items()
                if k not in ("events", "customers", "bad", "duplicates")}
    return SampleStats(counts["events"], counts["customers"], counts["bad"],
                       counts["duplicates"], by_event)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.app.sample", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, nargs="?", help="the events file to write")
    ap.add_argument("--catalog", type=Path, help="also write the products' catalog feed (CSV)")
    ap.add_argument("--customers", type=int, default=1500)
    ap.add_argument("--days", type=float, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bad-ratio", type=float, default=0.0)
    args = ap.parse_args(argv)
    if args.catalog is not None:
        args.catalog.write_text(catalog_csv(), encoding="utf-8")
        print(f"{len(CATALOGUE)} products -> {args.catalog}")
    if args.out is None:
        return 0
    stats = generate(args.out, customers=args.customers, days=args.days, seed=args.seed,
                     bad_ratio=args.bad_ratio)
    print(f"{stats.events} events, {stats.customers} customers, {stats.bad} bad lines, "
          f"{stats.duplicates} duplicates -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
