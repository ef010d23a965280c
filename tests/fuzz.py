"""Fuzzing the parser: malformed payloads of every kind through the real parse step.

    python -m tests.fuzz [--n 100000] [--seed 1]

Every payload is broken by construction (truncated JSON, wrong types, huge strings, deep
nesting, invalid UTF-8, NaN/Infinity, timestamps far in the past or future, missing or
unknown fields), so the expected outcome is: 0 crashes, 100% dead-lettered, each with a
reason. Prints a report; exits 1 if any payload crashed the parser or was accepted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable

import orjson

from nudge.core.config import EventsConfig
from nudge.core.events import RawChunk
from nudge.flows.parse import Limits, parse_chunk

Maker = Callable[[random.Random], bytes]


def _base(rng: random.Random) -> dict:
    return {"type": "track", "event": rng.choice(["Product Viewed", "Product Added",
                                                   "Order Completed", "Product Removed"]),
            "userId": f"c{rng.randrange(10**6)}", "messageId": f"m{rng.randrange(10**9)}",
            "timestamp": "2026-10-05T10:00:00.000Z",
            "properties": {"product_id": "sku-1", "name": "Shirt", "price": 10.0,
                           "quantity": 1, "category": "apparel", "products": []}}


# Values of the wrong type for each validated field (ints are valid ids in Segment).
WRONG = {
    "userId": [[1], {"a": 1}, True, 1.5],
    "timestamp": [1791199740, [1], {"t": 1}, True],
    "properties": ["x", [1], 3, True],
    "messageId": [7, [1], {"m": 1}, True],
    "price": ["9.99", True, [1], {"p": 1}, -1.0],
    "quantity": [0, -1, 1.5, "2", True, [1]],
    "product_id": [{"id": 1}, [1], 1.5, True],
    "products": ["x", {"a": 1}, [1], [[]]],
}


def _wrong_type(rng: random.Random) -> bytes:
    doc = _base(rng)
    where = rng.choice(sorted(WRONG))
    bad = rng.choice(WRONG[where])
    if where in ("userId", "timestamp", "properties", "messageId"):
        doc[where] = bad
    else:
        doc["event"] = "Order Completed" if where == "products" else "Product Added"
        doc["properties"][where] = bad
    return orjson.dumps(doc)


def _huge(rng: random.Random) -> bytes:
    doc = _base(rng)
    field = rng.choice(["userId", "name", "product_id", "payload"])
    if field == "userId":
        doc["userId"] = "u" * rng.randint(257, 5000)
    elif field == "payload":
        doc["properties"]["blob"] = "x" * rng.randint(70_000, 200_000)
    else:
        doc["event"] = "Product Added"  # an event whose product fields are read
        doc["properties"][field] = "p" * rng.randint(1025, 60_000)
    return orjson.dumps(doc)


def _deep(rng: random.Random) -> bytes:
    depth = rng.randint(1100, 5000)
    if rng.random() < 0.5:
        return b'{"type":"track","x":' + b"[" * depth + b"]" * depth + b"}"
    return b'{"a":' * depth + b"1" + b"}" * depth


def _utf8(rng: random.Random) -> bytes:
    raw = bytearray(orjson.dumps(_base(rng)))
    i = raw.index(b'"userId":"') + 10
    raw[i:i] = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
    return bytes(raw)


def _nan(rng: random.Random) -> bytes:
    token = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e999999"])
    raw = orjson.dumps(_base(rng)).replace(b'"price":10.0', b'"price":' + token)
    if token == b"1e999999":
        return raw  # orjson reads it as inf: rejected as out_of_range
    return raw


def _timestamp(rng: random.Random) -> bytes:
    doc = _base(rng)
    doc["timestamp"] = rng.choice([
        "1970-01-01T00:00:00Z", "1900-05-01T00:00:00Z", "0001-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-30T10:00:00Z",
        "2026-10-05T25:00:00Z", "2026-10-05", "2026-10-05T10:00:00", "yesterday", "",
        "2026-10-05T10:00:00+25:00", "1791199740"])
    return orjson.dumps(doc)


def _truncated(rng: random.Random) -> bytes:
    raw = orjson.dumps(_base(rng))
    return raw[: rng.randint(0, len(raw) - 1)]


def _missing(rng: random.Random) -> bytes:
    doc = _base(rng)
    what = rng.choice(["userId", "timestamp", "type", "event", "product_id"])
    if what == "product_id":
        doc["event"] = "Product Added"
        del doc["properties"]["product_id"]
    else:
        del doc[what]
    return orjson.dumps(doc)


def _unknown(rng: random.Random) -> bytes:
    doc = _base(rng)
    if rng.random() < 0.5:
        doc["type"] = rng.choice(["pages", "Screen", "aliases", "groups", "TRACK", 3])
    else:
        doc["event"] = rng.choice(["Product Teleported", "product added", "", "Order"])
    return orjson.dumps(doc)


def _not_object(rng: random.Random) -> bytes:
    return rng.choice([b"[]", b"[1,2,3]", b"null", b"true", b"12", b'"str"', b"", b"   "])


KINDS: dict[str, Maker] = {
    "truncated_json": _truncated, "wrong_types": _wrong_type, "huge_strings": _huge,
    "deep_nesting": _deep, "invalid_utf8": _utf8, "nan_infinity": _nan,
    "bad_timestamps": _timestamp, "missing_fields": _missing, "unknown_names": _unknown,
    "not_an_object": _not_object,
}


def run(n: int, seed: int) -> dict:
    rng = random.Random(seed)
    limits = Limits.from_config(EventsConfig(), now_ms=1_800_000_000_000)
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    accepted: list[tuple[str, bytes]] = []
    crashes: list[tuple[str, str]] = []
    names = sorted(KINDS)
    t = time.perf_counter()
    batch: list[tuple[int, bytes]] = []
    batch_kinds: list[str] = []
    for i in range(n):
        kind = names[i % len(names)]
        raw = KINDS[kind](rng)
        kinds[kind] += 1
        batch.append((i, raw))
        batch_kinds.append(kind)
        if len(batch) == 1000 or i == n - 1:
            try:
                events, dead, _ = parse_chunk(RawChunk("fuzz", 1, "fuzz", -1, batch), limits)
            except Exception as exc:  # a crash: what the report is for
                crashes.append((batch_kinds[0], repr(exc)))
                events, dead = [], []
            for d in dead:
                reasons[d.reason] += 1
            for ev in events:
                accepted.append((batch_kinds[batch.index(next(b for b in batch
                                                                if b[0] == ev.offset))],
                                 next(b[1] for b in batch if b[0] == ev.offset)))
            batch, batch_kinds = [], []
    elapsed = time.perf_counter() - t
    return {"n": n, "kinds": kinds, "reasons": reasons, "accepted": accepted,
            "crashes": crashes, "seconds": elapsed,
            "dead": sum(reasons.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tests.fuzz")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    r = run(args.n, args.seed)
    print(f"fuzz: {r['n']:,} malformed payloads through nudge.flows.parse in {r['seconds']:.1f} s")
    print(f"  crashes: {len(r['crashes'])}")
    print(f"  dead-lettered: {r['dead']:,} ({100 * r['dead'] / r['n']:.2f}%)")
    print(f"  accepted (should be 0): {len(r['accepted'])}")
    print("  by kind:   " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["kinds"].items())))
    print("  by reason: " + ", ".join(f"{k} {v:,}" for k, v in r["reasons"].most_common()))
    for kind, raw in r["accepted"][:5]:
        print(f"  ACCEPTED {kind}: {raw[:200]!r}")
    for kind, err in r["crashes"][:5]:
        print(f"  CRASH {kind}: {err}")
    return 1 if r["crashes"] or r["accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
