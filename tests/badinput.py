"""Hostile and broken records: a catalogue of ways producers get it wrong."""

from __future__ import annotations

import random

import orjson

from tests.events import T0, at


def bad_records(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """`n` malformed records, each with the reason code the parser must give it."""
    good = orjson.dumps({"type": "track", "event": "Product Added", "userId": "bad-user",
                         "timestamp": at(T0, 5), "properties": {"product_id": "p"}})

    def doc(**fields: object) -> bytes:
        base: dict[str, object] = {"type": "track", "event": "Product Added",
                                   "userId": f"bad-{rng.randrange(50)}",
                                   "timestamp": at(T0, rng.uniform(0, 600)),
                                   "properties": {"product_id": "p", "price": 1.0}}
        base.update(fields)
        return orjson.dumps({k: v for k, v in base.items() if v is not None})

    makers = [
        ("invalid_json", lambda: good[: rng.randrange(1, len(good) - 1)]),
        ("invalid_utf8", lambda: b'{"type": "track", "event": "\xff\xfe"}'),
        ("not_an_object", lambda: rng.choice([b"[]", b"17", b'"text"', b"null", b"true"])),
        ("empty_record", lambda: b" " * rng.randrange(0, 3)),
        ("unknown_type", lambda: doc(type=rng.choice(["pages", "Screen", "aliases", 7]))),
        ("unknown_event", lambda: doc(event=f"Thing {rng.randrange(1000)} Happened")),
        ("missing_id", lambda: doc(userId=None)),
        ("missing_timestamp", lambda: doc(timestamp=None)),
        ("bad_timestamp", lambda: doc(timestamp=rng.choice(
            ["tomorrow", "2026-13-45T99:00:00Z", "2026-10-05 10:00", "2026-10-05T10:00:00"]))),
        ("timestamp_out_of_range", lambda: doc(timestamp=rng.choice(
            ["1971-01-01T00:00:00Z", "2199-01-01T00:00:00Z"]))),
        ("wrong_type", lambda: doc(properties={"product_id": "p", "price": "12.50"})),
        ("wrong_type", lambda: doc(properties="not an object")),
        ("out_of_range", lambda: doc(properties={"product_id": "p", "quantity": -3})),
        ("payload_too_large", lambda: doc(properties={"product_id": "p",
                                                      "name": "x" * 70_000})),
        ("invalid_json", lambda: b'{"n": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("invalid_json", lambda: b'{"price": NaN}'),
        ("wrong_type", lambda: doc(userId=["a"])),
    ]
    out = []
    for _ in range(n):
        reason, make = rng.choice(makers)
        out.append((reason, make()))
    return out
