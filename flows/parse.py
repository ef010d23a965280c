"""Parse and validate: raw bytes -> Event, or a dead letter with a reason. Once, at the edge.

The contract is the Segment spec (https://segment.com/docs/connections/spec/): `track` with
the e-commerce v2 event names (v1 aliases accepted) and `identify`. A customer is keyed by
`userId`, else `anonymousId`; anonymous and identified histories are kept apart.

Every rejection raises InputError with a stable `reason` code, which becomes a dead letter:

>>> limits = Limits.from_config(EventsConfig(), now_ms=1_800_000_000_000)
>>> parse_record(b'{"type": "page"}', limits)
Traceback (most recent call last):
...
nudge.errors.InputError: unknown_type: type 'page' is not one of track, identify
>>> ev = parse_record(b'{"type":"track","event":"Added Product","userId":"c1",'
...     b'"timestamp":"2026-10-05T10:00:00Z","properties":{"product_id":"p1","price":9.5}}', limits)
>>> (ev.kind == Kind.PRODUCT_ADDED, ev.customer_id, ev.products[0].quantity)
(True, 'c1', 1)

The partition clock (`PartitionClock`) turns event times into the partition's watermark and
raises events that arrive later than the allowed lateness up to it, so that no event can ever
reach a shard behind a watermark it has already seen (see README "Event time").
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from bytewax.operators import StatefulBatchLogic

from flows import metrics
from nudge.config import EventsConfig
from nudge.errors import InputError
from nudge.records import (
    DeadLetter,
    Event,
    Kind,
    ParsedChunk,
    Position,
    Product,
    RawChunk,
    Traits,
)

TRACK_NAMES: dict[str, int] = {
    "Product Viewed": Kind.PRODUCT_VIEWED,
    "Viewed Product": Kind.PRODUCT_VIEWED,
    "Product Added": Kind.PRODUCT_ADDED,
    "Added Product": Kind.PRODUCT_ADDED,
    "Product Removed": Kind.PRODUCT_REMOVED,
    "Removed Product": Kind.PRODUCT_REMOVED,
    "Cart Viewed": Kind.CART_VIEWED,
    "Viewed Cart": Kind.CART_VIEWED,
    "Checkout Started": Kind.CHECKOUT_STARTED,
    "Started Checkout": Kind.CHECKOUT_STARTED,
    "Order Completed": Kind.ORDER_COMPLETED,
    "Completed Order": Kind.ORDER_COMPLETED,
    "Unsubscribed": Kind.UNSUBSCRIBED,
    "Email Unsubscribed": Kind.UNSUBSCRIBED,
}

MAX_ID = 256
MAX_TEXT = 1024
MAX_PRODUCTS = 200
# Events before this are certainly bogus (an unset clock, a seconds/ms mix-up).
MIN_TIMESTAMP = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload: int
    min_ts: int
    max_ts: int
    ignore: frozenset[str]

    @classmethod
    def from_config(cls, events: EventsConfig, *, now_ms: int) -> Limits:
        """`now_ms` bounds timestamps from the future: the one wall-clock read of parse.

        It only rejects timestamps no producer can honestly send (beyond now + skew); it
        never moves event time, so replays of past data parse identically on any day.
        """
        return cls(events.max_payload_bytes, MIN_TIMESTAMP, now_ms + events.max_future_skew,
                   frozenset(events.ignore))


class Ignored(Exception):
    """A well-formed event whose name the config lists under `events.ignore`."""


def _fail(reason: str, detail: str) -> InputError:
    return InputError(reason, detail)


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool = False,
          limit: int = MAX_TEXT) -> str | None:
    value = obj.get(key)
    if type(value) is str and len(value) <= limit:  # the common case, checked cheaply
        return value
    if value is None:
        if required:
            raise _fail("missing_field", f"{where}.{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail("wrong_type", f"{where}.{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > limit:
        raise _fail("field_too_long", f"{where}.{key} is {len(text)} characters (max {limit})")
    return text


def _number(obj: dict[str, Any], key: str, where: str, default: float = 0.0) -> float:
    value = obj.get(key)
    if type(value) is float and 0.0 <= value < math.inf:
        return value
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail("wrong_type", f"{where}.{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise _fail("out_of_range", f"{where}.{key} must be a finite number >= 0, got {value}")
    return float(value)


def _product(obj: Any, where: str, *, default_qty: int) -> Product:
    # Fast path: every field present-or-absent with the right type and size. Anything
    # unusual falls through to the checks below, which name the field that is wrong.
    if type(obj) is dict:
        get = obj.get
        pid, name, price, qty = get("product_id"), get("name"), get("price", 0.0), get("quantity")
        cat, img, url = get("category", ""), get("image_url", ""), get("url", "")
        if qty is None:
            qty = default_qty
        if (type(pid) is str and 0 < len(pid) <= MAX_ID and type(name) is str
                and len(name) <= MAX_TEXT and type(price) is float and 0.0 <= price < math.inf
                and type(qty) is int and 0 < qty <= 10_000 and type(cat) is str
                and len(cat) <= 128 and type(img) is str and len(img) <= MAX_TEXT
                and type(url) is str and len(url) <= MAX_TEXT):
            return Product(pid, name, price, qty, cat, img, url)
    if not isinstance(obj, dict):
        raise _fail("wrong_type", f"{where} must be an object")
    pid = (_text(obj, "product_id", where, limit=MAX_ID) or _text(obj, "sku", where, limit=MAX_ID)
           or _text(obj, "id", where, limit=MAX_ID))
    if not pid:
        raise _fail("missing_field", f"{where}.product_id (or sku) is required")
    qty = obj.get("quantity", default_qty)
    if type(qty) is not int:
        raise _fail("wrong_type", f"{where}.quantity must be an integer, got {type(qty).__name__}")
    if qty < 1 or qty > 10_000:
        raise _fail("out_of_range", f"{where}.quantity must be between 1 and 10000, got {qty}")
    return Product(
        product_id=pid,
        name=_text(obj, "name", where) or pid,
        price=_number(obj, "price", where),
        quantity=qty,
        category=_text(obj, "category", where, limit=128) or "",
        image_url=_text(obj, "image_url", where) or "",
        url=_text(obj, "url", where) or "",
    )


def _products(props: dict[str, Any]) -> tuple[Product, ...]:
    items = props.get("products")
    if items is None:
        return ()
    if not isinstance(items, list):
        raise _fail("wrong_type", "properties.products must be a list")
    if len(items) > MAX_PRODUCTS:
        raise _fail("out_of_range", f"properties.products has {len(items)} items (max 200)")
    return tuple(_product(p, f"properties.products[{i}]", default_qty=1)
                 for i, p in enumerate(items))


@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _traits(obj: Any) -> Traits:
    if obj is None:
        return Traits()
    if not isinstance(obj, dict):
        raise _fail("wrong_type", "traits must be an object")
    email = _text(obj, "email", "traits", limit=254)
    if email is not None:
        email = email.strip()
        local, _, domain = email.rpartition("@")
        if not local or "." not in domain or any(c.isspace() or c in "<>,;\"" for c in email):
            raise _fail("invalid_email", "traits.email is not an email address")
    tz = _text(obj, "timezone", "traits", limit=64)
    if tz is not None and not valid_timezone(tz):
        raise _fail("invalid_timezone", f"traits.timezone {tz!r} is not an IANA timezone")
    consent = obj.get("marketing_consent")
    if consent is not None and not isinstance(consent, bool):
        raise _fail("wrong_type", "traits.marketing_consent must be true or false")
    return Traits(
        email=email,
        first_name=_text(obj, "first_name", "traits", limit=128),
        last_name=_text(obj, "last_name", "traits", limit=128),
        timezone=tz,
        marketing_consent=consent,
    )


def _timestamp(doc: dict[str, Any], limits: Limits) -> int:
    raw = doc.get("timestamp")
    if raw is None:
        raise _fail("missing_timestamp", "timestamp is required (ISO-8601 with an offset)")
    if not isinstance(raw, str):
        raise _fail("bad_timestamp", f"timestamp must be an ISO-8601 string, got {raw!r:.40}")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise _fail("bad_timestamp", f"timestamp {raw!r:.60} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise _fail("bad_timestamp", f"timestamp {raw!r:.60} has no timezone offset")
    try:
        ts = round(parsed.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        raise _fail("bad_timestamp", f"timestamp {raw!r:.60} is out of range") from None
    if ts < limits.min_ts or ts > limits.max_ts:
        raise _fail("timestamp_out_of_range",
                    f"timestamp {raw!r:.60} is before 2000 or too far in the future")
    return ts


_SINGLE_PRODUCT = {name: kind for name, kind in TRACK_NAMES.items()
                   if kind in (Kind.PRODUCT_VIEWED, Kind.PRODUCT_ADDED, Kind.PRODUCT_REMOVED)}
_MINUTES: dict[str, int] = {}


def _minute(prefix: str) -> int:
    """'2026-10-05T08:12' -> ms, cached: a partition's events share few minutes."""
    base = _MINUTES.get(prefix)
    if base is None:
        try:
            base = round(datetime.fromisoformat(prefix + "+00:00").timestamp() * 1000)
        except ValueError:
            base = -1
        if len(_MINUTES) > 50_000:
            _MINUTES.clear()
        _MINUTES[prefix] = base
    return base


def _fast(doc: dict[str, Any], limits: Limits, offset: int) -> Event | None:
    """The hot path: a track event about one product, fields of the usual types and the
    timestamp in the usual '2026-10-05T08:12:33.120Z' shape. Returns None for anything
    else, which the full path then parses (or rejects, naming the field). Both paths give
    the same Event for the same record (tests/test_parse.py checks it)."""
    get = doc.get
    if get("type") != "track":
        return None
    kind = _SINGLE_PRODUCT.get(get("event"))  # type: ignore[arg-type]
    cid, mid, ts_text, props = get("userId"), get("messageId", ""), get("timestamp"), \
        get("properties")
    if (kind is None or type(cid) is not str or not 0 < len(cid) <= MAX_ID
            or type(mid) is not str or type(ts_text) is not str or len(ts_text) != 24
            or ts_text[23] != "Z" or ts_text[19] != "." or ts_text[16] != ":"
            or type(props) is not dict):
        return None
    sec, milli = ts_text[17:19], ts_text[20:23]
    base = _minute(ts_text[:16])
    if base < 0 or not (sec.isdigit() and milli.isdigit() and sec.isascii()
                        and milli.isascii() and sec < "60"):
        return None
    ts = base + int(sec) * 1000 + int(milli)
    if ts < limits.min_ts or ts > limits.max_ts:
        return None
    pget = props.get
    pid, name, price, qty = pget("product_id"), pget("name"), pget("price", 0.0), \
        pget("quantity", 1)
    cat, img, url = pget("category", ""), pget("image_url", ""), pget("url", "")
    if (type(pid) is str and 0 < len(pid) <= MAX_ID and type(name) is str
            and len(name) <= MAX_TEXT and type(price) is float and 0.0 <= price < math.inf
            and type(qty) is int and 0 < qty <= 10_000 and type(cat) is str
            and len(cat) <= 128 and type(img) is str and len(img) <= MAX_TEXT
            and type(url) is str and len(url) <= MAX_TEXT):
        return Event(kind, cid, ts, mid, offset, (Product(pid, name, price, qty, cat, img, url),))
    return None


def parse_record(raw: bytes, limits: Limits, offset: int = 0) -> Event:
    """One record -> one Event. Raises InputError (dead letter) or Ignored."""
    if len(raw) > limits.max_payload:
        raise _fail("payload_too_large", f"{len(raw)} bytes (max {limits.max_payload})")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            raise _fail("empty_record", "empty record") from None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail("invalid_utf8", "record is not valid UTF-8") from None
        raise _fail("invalid_json", f"not valid JSON: {exc}") from None
    if type(doc) is dict:
        event = _fast(doc, limits, offset)
        if event is not None:
            return event
        return _full(doc, limits, offset)
    raise _fail("not_an_object", f"record is a JSON {type(doc).__name__}, not an object")


def _full(doc: dict[str, Any], limits: Limits, offset: int) -> Event:
    """Every event type, every check, each failure named."""
    kind_name = doc.get("type")
    customer_id = (_text(doc, "userId", "record", limit=MAX_ID)
                   or _text(doc, "anonymousId", "record", limit=MAX_ID))
    mid = doc.get("messageId")
    if kind_name == "track":
        name = doc.get("event")
        if not isinstance(name, str):
            raise _fail("missing_field", "track needs an event name")
        kind = TRACK_NAMES.get(name)
        if kind is None:
            if name in limits.ignore:
                raise Ignored(name)
            raise _fail("unknown_event", f"event {name!r:.80} is not a known e-commerce event")
    elif kind_name == "identify":
        kind = Kind.IDENTIFY
    else:
        raise _fail("unknown_type", f"type {kind_name!r:.40} is not one of track, identify")
    if not customer_id:
        raise _fail("missing_id", "neither userId nor anonymousId is set")
    if mid is not None and not isinstance(mid, str):
        raise _fail("wrong_type", "messageId must be a string")
    ts = _timestamp(doc, limits)
    mkey = mid or ""
    if kind == Kind.IDENTIFY:
        return Event(kind, customer_id, ts, mkey, offset, (), None, 0.0, _traits(doc.get("traits")))
    props = doc.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise _fail("wrong_type", "properties must be an object")
    if kind in (Kind.PRODUCT_VIEWED, Kind.PRODUCT_ADDED, Kind.PRODUCT_REMOVED):
        return Event(kind, customer_id, ts, mkey, offset,
                     (_product(props, "properties", default_qty=1),))
    if kind == Kind.ORDER_COMPLETED:
        revenue = props.get("revenue", props.get("total"))
        return Event(kind, customer_id, ts, mkey, offset, products=_products(props),
                     order_id=_text(props, "order_id", "properties", limit=MAX_ID),
                     revenue=_number({"revenue": revenue}, "revenue", "properties"))
    if kind in (Kind.CART_VIEWED, Kind.CHECKOUT_STARTED):
        return Event(kind, customer_id, ts, mkey, offset, products=_products(props))
    return Event(kind, customer_id, ts, mkey, offset)


@dataclass(slots=True)
class PartitionClock:
    """A source partition's event-time clock, kept in partition order.

    The watermark is the largest event time seen minus the allowed lateness, or a live
    source's idle heartbeat, whichever is later. An event older than the watermark gets the
    watermark as its effective time: its effects then never land behind a decision a shard
    has already taken, so decisions do not depend on batching, pacing or worker count.
    """

    lateness: int
    max_ts: int | None = None
    heartbeat: int | None = None
    emitted: int | None = None
    late: int = 0

    def floor(self) -> int | None:
        if self.max_ts is None:
            return self.heartbeat
        wm = self.max_ts - self.lateness
        return wm if self.heartbeat is None or wm >= self.heartbeat else self.heartbeat

    def admit(self, events: list[Event]) -> list[Event]:
        """Raise late events to the watermark and advance the clock, in order."""
        floor = self.floor()
        max_ts = self.max_ts
        out = events
        for i, ev in enumerate(events):
            ts = ev.ts
            if floor is not None and ts < floor:
                self.late += 1
                if out is events:
                    out = list(events)
                out[i] = ev._replace(ts=floor)
            elif max_ts is None or ts > max_ts:
                max_ts = ts
                wm = ts - self.lateness
                if floor is None or wm > floor:
                    floor = wm
        self.max_ts = max_ts
        return out

    def observe_heartbeat(self, heartbeat: int) -> None:
        if self.heartbeat is None or heartbeat > self.heartbeat:
            self.heartbeat = heartbeat

    def tick(self) -> tuple[int | None, bool]:
        """The watermark now, and whether it moved since the last tick that was sent."""
        wm = self.floor()
        moved = wm is not None and (self.emitted is None or wm > self.emitted)
        if moved:
            self.emitted = wm
        return wm, moved


def parse_chunk(chunk: RawChunk, limits: Limits) -> tuple[list[Event], list[DeadLetter], int]:
    """Parse a chunk's records in order: (events, dead letters, number ignored)."""
    events: list[Event] = []
    dead: list[DeadLetter] = []
    ignored = 0
    for offset, raw in chunk.records:
        try:
            events.append(parse_record(raw, limits, offset))
        except InputError as exc:
            dead.append(DeadLetter("parse", exc.reason, exc.detail,
                                   Position(chunk.source, chunk.partition, offset), raw))
        except Ignored:
            ignored += 1
    return events, dead, ignored


class ParseLogic(StatefulBatchLogic[RawChunk, ParsedChunk, dict[str, Any]]):
    """The parse step for one source partition: its clock lives in the snapshot, next to
    the source's offset of the same epoch, so a resumed run assigns the same effective
    times and watermarks as an uninterrupted one.

        in:  (partition key, RawChunk)
        out: (partition key, ParsedChunk)
    """

    def __init__(self, events: EventsConfig, resume: dict[str, Any] | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.events = events
        self.clock = clock
        self.pclock = PartitionClock(events.allowed_lateness)
        if resume is not None:
            self.pclock.max_ts = resume["max_ts"]
            self.pclock.heartbeat = resume["heartbeat"]
            self.pclock.emitted = resume["emitted"]

    def on_batch(self, values: list[RawChunk]) -> tuple[list[ParsedChunk], bool]:
        limits = Limits.from_config(self.events, now_ms=int(self.clock() * 1000))
        out = []
        for chunk in values:
            events, dead, ignored = parse_chunk(chunk, limits)
            late_before = self.pclock.late
            events = self.pclock.admit(events)
            if chunk.heartbeat is not None:
                self.pclock.observe_heartbeat(chunk.heartbeat)
            wm, moved = self.pclock.tick()
            _count(chunk.part, len(events), self.pclock.late - late_before, ignored, dead)
            out.append(ParsedChunk(chunk.part, chunk.n_parts, events, dead, wm, moved,
                                   chunk.final, self.pclock.max_ts))
        return out, False

    def snapshot(self) -> dict[str, Any]:
        c = self.pclock
        return {"max_ts": c.max_ts, "heartbeat": c.heartbeat, "emitted": c.emitted}


def _count(part: str, events: int, late: int, ignored: int, dead: list[DeadLetter]) -> None:
    if events:
        metrics.EVENTS.labels(part).inc(events)
    if late:
        metrics.LATE.labels(part).inc(late)
    if ignored:
        metrics.IGNORED.labels(part).inc(ignored)
    for d in dead:
        metrics.DEAD_LETTERS.labels("parse", d.reason).inc()
