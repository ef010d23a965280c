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
from nudge.app.samplecatalog import CATALOGUE, catalog_csv
from nudge.app.shoppers import customer_events, history, logs_in_at_the_cart
from nudge.core.timefmt import DAY, HOUR, parse_iso, to_iso


@dataclass(frozen=True, slots=True)
class SampleStats:
    events: int
    customers: int
    bad: int
    duplicates: int
    by_event: dict[str, int] = field(default_factory=dict)


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
        histories[i] = history(hrng, f"c{i:07d}", t0)
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
            events = customer_events(crng, cid, arrivals[i], end, anon, sessions_mean,
                                      returning=back, responder=None if anon else responder)
            # Its own generator, so the other shoppers' streams stay as they were.
            lrng = random.Random(seed * 1_000_003 + i)
            if not anon and not back and lrng.random() < login_share:
                events = logs_in_at_the_cart(lrng, events, f"a-{i:07d}-{lrng.randrange(99)}")
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
