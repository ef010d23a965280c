"""Catalog feed records -> CatalogUpdates: the formats shops already feed their ESPs.

A record is a JSON object (a JSONL line, a Kafka message value, or a CSV row read as one)
with the Google Merchant feed's columns, and the names Segment's product events use:

    id (or product_id)               required
    title (or name)                  required unless the record removes the product
    price                            49.0, "49.00" or "49.00 EUR"; required, >= 0
    sale_price                       the same forms, optional ("" = none)
    availability                     "in stock" / "in_stock", "out of stock", "preorder",
                                     "backorder"; default in stock
    link (or url), image_link (or image_url), product_type (or category), brand
    updated_at (or timestamp)        ISO-8601 with an offset: the update's event time
    deleted                          true: remove the product (as a Kafka tombstone does)

Without `updated_at` the event time is the Kafka message's timestamp, and 0 (known from the
start) for a file. A bad record raises FeedError with a stable reason code, which becomes a
dead letter of stage `catalog` and loses nothing else.

Kafka records reach the parse step as an envelope (`envelope()`): the message key (the
product id of a compacted topic), its timestamp and its value, or none for a tombstone.

>>> u = parse_record({"id": "sku-1", "title": "Linen Shirt", "price": "49.00 EUR",
...                   "availability": "in stock", "product_type": "apparel"}, "f", 3)
>>> u.product_id, u.ts, u.entry.price, u.entry.availability
('sku-1', 0, 49.0, 'in_stock')
>>> parse_record({"id": "sku-1", "price": -1, "title": "x"}, "f", 4)
Traceback (most recent call last):
...
nudge.scoring.catalogfeed.FeedError: out_of_range: price -1 is negative
"""

from __future__ import annotations

import math
import re
import struct
from typing import Any

import orjson

from nudge.core.timefmt import parse_iso
from nudge.scoring.catalog import AVAILABILITY, CatalogEntry, CatalogUpdate

MAX_ID = 256
MAX_TEXT = 2048  # titles, links, image links, types, brands
_MONEY = re.compile(r"\s*(-?\d+(?:\.\d+)?)(?:\s+[A-Za-z]{3})?\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENVELOPE = struct.Struct(">BqH")  # magic 0, timestamp ms (-1: none), key length
_TOMBSTONE = b"\x00"
_VALUE = b"\x01"


class FeedError(ValueError):
    """A catalog record that cannot become an update: `reason` is a stable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def envelope(key: bytes | None, timestamp: int | None, value: bytes | None) -> bytes:
    """A Kafka catalog message as one record: key, timestamp (ms) and value or tombstone."""
    k = key or b""
    head = _ENVELOPE.pack(0, -1 if timestamp is None else timestamp, len(k))
    return head + k + (_TOMBSTONE if value is None else _VALUE + value)


def _open(raw: bytes) -> tuple[dict[str, Any] | None, int | None, str | None]:
    """(object or None for a tombstone, message timestamp, message key) of an envelope."""
    if len(raw) < _ENVELOPE.size + 1:
        raise FeedError("invalid_record", "truncated Kafka envelope")
    _, ts, klen = _ENVELOPE.unpack_from(raw)
    key_end = _ENVELOPE.size + klen
    try:
        key = raw[_ENVELOPE.size:key_end].decode() or None
    except UnicodeDecodeError:
        raise FeedError("invalid_utf8", "message key is not UTF-8") from None
    flag, value = raw[key_end:key_end + 1], raw[key_end + 1:]
    stamp = None if ts < 0 else ts
    if flag == _TOMBSTONE:
        return None, stamp, key
    return _object(value), stamp, key


def _object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FeedError("invalid_json", str(exc)[:200]) from None
    if not isinstance(data, dict):
        raise FeedError("not_an_object", f"a catalog record is a JSON object, not "
                                          f"{type(data).__name__}")
    return data


def parse_raw(raw: bytes, part: str, offset: int) -> CatalogUpdate:
    """One record as the catalog sources deliver it: an envelope or a JSON object."""
    if raw[:1] == b"\x00":
        data, stamp, key = _open(raw)
        if data is None:
            if not key:
                raise FeedError("missing_id", "a tombstone without a key")
            return CatalogUpdate(_id(key, "key"), stamp or 0, None, part, offset)
        return parse_record(data, part, offset, default_ts=stamp or 0, key=key)
    if not raw.strip():
        raise FeedError("empty_record", "an empty line")
    return parse_record(_object(raw), part, offset)


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value is not None and value != "":
            return value
    return None


def _id(value: Any, name: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FeedError("missing_id" if value in (None, "") else "wrong_type",
                        f"{name} must be a non-empty string")
    if len(value) > MAX_ID:
        raise FeedError("field_too_long", f"{name} is {len(value)} characters (max {MAX_ID})")
    if _CONTROL.search(value):
        raise FeedError("wrong_type", f"{name} has control characters")
    return value


def _text(data: dict[str, Any], *names: str, required: bool = False) -> str:
    value = _first(data, *names)
    if value is None:
        if required:
            raise FeedError("missing_field", f"{names[0]} is required")
        return ""
    if not isinstance(value, str):
        raise FeedError("wrong_type", f"{names[0]} must be a string")
    if len(value) > MAX_TEXT:
        raise FeedError("field_too_long", f"{names[0]} is {len(value)} characters "
                                          f"(max {MAX_TEXT})")
    return value


def _money(data: dict[str, Any], name: str, required: bool) -> float | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise FeedError("missing_field", f"{name} is required")
        return None
    if isinstance(value, bool):
        raise FeedError("wrong_type", f"{name} must be a number or '49.00 EUR'")
    if isinstance(value, str):
        m = _MONEY.fullmatch(value)
        if m is None:
            raise FeedError("wrong_type", f"{name} {value[:40]!r} is not a price "
                                          "(49.00 or '49.00 EUR')")
        value = float(m.group(1))
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise FeedError("wrong_type", f"{name} must be a finite number")
    if value < 0:
        raise FeedError("out_of_range", f"{name} {value} is negative")
    return float(value)


def _availability(data: dict[str, Any]) -> str:
    value = data.get("availability")
    if value is None or value == "":
        return AVAILABILITY[0]
    if not isinstance(value, str):
        raise FeedError("wrong_type", "availability must be a string")
    norm = value.strip().lower().replace(" ", "_")
    if norm not in AVAILABILITY:
        raise FeedError("out_of_range", f"availability {value[:40]!r} is not one of "
                                        "in stock, out of stock, preorder, backorder")
    return norm


def _timestamp(data: dict[str, Any], default: int) -> int:
    value = _first(data, "updated_at", "timestamp")
    if value is None:
        return default
    if not isinstance(value, str):
        raise FeedError("wrong_type", "updated_at must be an ISO-8601 string")
    try:
        return parse_iso(value)
    except (ValueError, OverflowError) as exc:
        raise FeedError("bad_timestamp", str(exc)[:200]) from None


def parse_record(data: dict[str, Any], part: str, offset: int, *, default_ts: int = 0,
                 key: str | None = None) -> CatalogUpdate:
    """A feed record -> an update. `key`: a Kafka message key, which must match the id."""
    raw_id = _first(data, "id", "product_id")
    if raw_id is None and key:
        raw_id = key
    pid = _id(raw_id, "id")
    if key and key != pid:
        raise FeedError("key_mismatch", "the message key is not the record's id")
    ts = _timestamp(data, default_ts)
    deleted = data.get("deleted")
    if deleted is not None and not isinstance(deleted, bool):
        raise FeedError("wrong_type", "deleted must be true or false")
    if deleted:
        return CatalogUpdate(pid, ts, None, part, offset)
    price = _money(data, "price", True)
    assert price is not None
    entry = CatalogEntry(
        pid,
        _text(data, "title", "name", required=True),
        price,
        _money(data, "sale_price", False),
        _availability(data),
        _text(data, "link", "url"),
        _text(data, "image_link", "image_url"),
        _text(data, "product_type", "category"),
        _text(data, "brand"),
        ts,
    )
    return CatalogUpdate(pid, ts, entry, part, offset)
