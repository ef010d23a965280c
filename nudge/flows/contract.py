"""The event contract: raw bytes -> Event, or InputError with a stable reason. Pure, no Bytewax.

The contract is the Segment spec (https://segment.com/docs/connections/spec/): `track` with
the e-commerce v2 event names (v1 aliases accepted), the email engagement events,
`identify` (its traits at the top or, as RudderStack sends them, under `context.traits`),
`page` and `screen` (engagement, or a product view when they carry a product), `alias`, and
`group` (accepted and ignored, like the rest of the e-commerce spec in COUNTED_ONLY). A
customer is keyed by `userId`, else by `anonymousId` in its own namespace (nudge.core.ids:
an anonymousId never acts as the user of the same id). Values in `identity.blocked_ids` are
never identifiers.

Two paths give the same Event for every record the first one accepts:
  - the fast path decodes and type-checks in one pass with msgspec into the structs of
    nudge/flows/wire.py, shaped like the usual records;
  - anything the fast path does not accept (wrong types, aliases such as `sku`, nulls,
    unknown names, bad input of any kind) goes to the full path, which reads a plain dict,
    accepts what it can and names the field that is wrong. tests/test_parse.py checks that
    the paths agree.

>>> limits = Limits.from_config(EventsConfig(), now_ms=1_800_000_000_000)
>>> parse_record(b'{"type": "pages"}', limits)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nudge.core.errors.InputError: unknown_type: type 'pages' is not one of track, identify, page, ...
>>> ev = parse_record(b'{"type":"track","event":"Added Product","userId":"c1",'
...     b'"timestamp":"2026-10-05T10:00:00Z","properties":{"product_id":"p1","price":9.5}}', limits)
>>> (ev.kind == Kind.PRODUCT_ADDED, ev.customer_id, ev.products[0].quantity)
(True, 'c1', 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import orjson

from nudge.core.address import canonical
from nudge.core.config import EventsConfig, IdentityConfig
from nudge.core.errors import InputError
from nudge.core.ids import ANON_PREFIX, USER_PREFIX, anonymous_key, user_key
from nudge.core.records import (
    CONSENT_KINDS,
    COUNTED_ONLY,
    EMAIL_KINDS,
    TRACK_NAMES,
    ConsentInfo,
    EmailRef,
    Event,
    Kind,
    Product,
    Traits,
)
from nudge.flows.wire import (
    MAX_CATEGORY,
    MAX_ID,
    MAX_MESSAGE_ID,
    MAX_PRODUCTS,
    MAX_QUANTITY,
    MAX_TEXT,
    Aware,
    WireProduct,
    decode,
)

SINGLE_PRODUCT = frozenset((Kind.PRODUCT_VIEWED, Kind.PRODUCT_ADDED, Kind.PRODUCT_REMOVED))

# "" and every character str.strip() removes: a blank or padded id is checked in full
_SPACES: Final = frozenset(["", *(c for c in map(chr, range(0x3001)) if c.isspace())])

# Events before this are certainly bogus (an unset clock, a seconds/ms mix-up).
MIN_TIMESTAMP: Final = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload: int
    min_ts: int
    max_ts: int
    ignore: frozenset[str]
    blocked: frozenset[str] = frozenset(IdentityConfig().blocked_ids)
    # first characters a blocked value (any case, or blank) can start with: most ids are
    # cleared by one set lookup
    blocked_first: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, events: EventsConfig, *, now_ms: int,
                    identity: IdentityConfig | None = None) -> Limits:
        """`now_ms` bounds timestamps from the future: the one wall-clock read of parse.

        It only rejects timestamps no producer can honestly send (beyond now + skew); it
        never moves event time, so replays of past data parse identically on any day.
        """
        blocked = frozenset(b.strip().lower() for b in (identity or IdentityConfig()).blocked_ids)
        first = {c for b in blocked for c in (b[:1].lower(), b[:1].upper())}
        first |= _SPACES
        return cls(events.max_payload_bytes, MIN_TIMESTAMP, now_ms + events.max_future_skew,
                   frozenset(events.ignore), blocked, frozenset(first))


class Ignored(Exception):
    """A well-formed call Nudge deliberately does not act on: a `group`, an event of
    COUNTED_ONLY, or a name the config lists under `events.ignore`. Counted by name."""


class Refused(Exception):
    """A valid event one of whose identifiers is refused (a blocked value): the event is
    kept under its other identifier, and the refusal is a dead letter (stage "identity")."""

    def __init__(self, event: Event, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason
        self.detail = detail


_RESERVED: Final = (ANON_PREFIX, USER_PREFIX)
_BLOCKED_LEN: Final = 16


def blocked(identifier: str, limits: Limits) -> bool:
    """A value no identifier may have (`identity.blocked_ids`, any case, blank too)."""
    if len(identifier) > _BLOCKED_LEN or (
            limits.blocked_first and identifier[:1] not in limits.blocked_first):
        return False
    bare = identifier.strip()
    return not bare or bare.lower() in limits.blocked


def _fail(reason: str, detail: str) -> InputError:
    return InputError(reason, detail)


# -- timestamps (shared by both paths, so they agree to the millisecond) ----------------
# RFC 3339 first (msgspec's C parser, the fast path's): then the wider ISO-8601 forms
# datetime.fromisoformat reads (e.g. '2026-10-05T10:00Z'). Both paths try them in this order.

def to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def timestamp_ms(text: str) -> int:
    """ISO-8601 with an offset -> ms. Raises InputError(bad_timestamp)."""
    try:
        return to_ms(msgspec.convert(text, Aware))
    except msgspec.ValidationError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise _fail("bad_timestamp", f"timestamp {text!r:.60} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise _fail("bad_timestamp", f"timestamp {text!r:.60} has no timezone offset")
    try:
        return to_ms(parsed)
    except (OverflowError, OSError, ValueError):
        raise _fail("bad_timestamp", f"timestamp {text!r:.60} is out of range") from None


def _in_range(ts: int, text: str, limits: Limits) -> int:
    if ts < limits.min_ts or ts > limits.max_ts:
        raise _fail("timestamp_out_of_range",
                    f"timestamp {text!r:.60} is before 2000 or too far in the future")
    return ts


# -- the fast path ----------------------------------------------------------------------



def _fast(raw: bytes, limits: Limits, offset: int, part: int) -> Event | None:
    """The usual records in one pass, or None: then the full path decides."""
    try:
        d = decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None  # RecursionError: deep nesting, which the full path names
    uid, aid = d.userId, d.anonymousId
    if uid is not None:
        if uid.startswith(_RESERVED) or blocked(uid, limits) or \
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


# -- the full path ----------------------------------------------------------------------


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool = False,
          limit: int = MAX_TEXT) -> str | None:
    value = obj.get(key)
    if type(value) is str and len(value) <= limit:
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


def _number(value: Any, key: str, where: str, default: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail("wrong_type", f"{where}.{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise _fail("out_of_range", f"{where}.{key} must be a finite number >= 0, got {value}")
    return float(value)


def _product(obj: Any, where: str) -> Product:
    if not isinstance(obj, dict):
        raise _fail("wrong_type", f"{where} must be an object")
    pid = (_text(obj, "product_id", where, limit=MAX_ID) or _text(obj, "sku", where, limit=MAX_ID)
           or _text(obj, "id", where, limit=MAX_ID))
    if not pid:
        raise _fail("missing_field", f"{where}.product_id (or sku) is required")
    qty = obj.get("quantity", 1)
    if type(qty) is not int:
        raise _fail("wrong_type", f"{where}.quantity must be an integer, got {type(qty).__name__}")
    if qty < 1 or qty > MAX_QUANTITY:
        raise _fail("out_of_range", f"{where}.quantity must be between 1 and 10000, got {qty}")
    return Product(
        product_id=pid,
        name=_text(obj, "name", where) or pid,
        price=_number(obj.get("price"), "price", where),
        quantity=qty,
        category=_text(obj, "category", where, limit=MAX_CATEGORY) or "",
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
    return tuple(_product(p, f"properties.products[{i}]") for i, p in enumerate(items))


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
        email = canonical(email.strip())
        if email is None:
            raise _fail("invalid_email", "traits.email is not a plain address (a dot-atom "
                        "local part at a DNS domain name)")
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


def _identify_traits(doc: dict[str, Any]) -> Any:
    """An identify's traits: RudderStack's SDKs put them under `context.traits` only, Segment's
    at the top; with both, a field at the top wins."""
    traits = doc.get("traits")
    ctx = doc.get("context")
    inner = ctx.get("traits") if isinstance(ctx, dict) else None
    if not isinstance(inner, dict):
        return traits
    if traits is None:
        return inner
    if not isinstance(traits, dict):
        return traits  # named as the wrong type by _traits
    return {**inner, **{k: v for k, v in traits.items() if v is not None}}


def _email_ref(props: dict[str, Any], customer_id: str) -> EmailRef | None:
    """The email an engagement event names (None: it names none, an older producer's)."""
    key = _text(props, "email_key", "properties", limit=4 * MAX_ID)
    if key is None:
        return None
    trigger = _text(props, "trigger", "properties", required=True, limit=MAX_ID) or ""
    stage = props.get("stage")
    if type(stage) is not int:
        if stage is None:
            raise _fail("missing_field", "properties.stage is required with email_key")
        raise _fail("wrong_type",
                    f"properties.stage must be an integer, got {type(stage).__name__}")
    if stage < 1:
        raise _fail("out_of_range", f"properties.stage must be 1 or more, got {stage}")
    machine = props.get("machine", False)
    if machine is None:
        machine = False
    if type(machine) is not bool:
        raise _fail("wrong_type", "properties.machine must be true or false")
    parts = key.split("\x1f")
    # the email's idempotency key names the episode; only this customer's own emails count
    episode = int(parts[2]) if len(parts) == 4 and parts[0] == customer_id and \
        parts[1] == trigger and parts[2].isdigit() and len(parts[2]) < 10 else 0
    return EmailRef(key, trigger, stage, _text(props, "variant", "properties", limit=MAX_ID),
                    episode, machine)


def _consent(props: dict[str, Any], kind: int) -> ConsentInfo:
    """Scope, recipient address and bounce type of a consent event (README "Event
    contract")."""
    scope = _text(props, "scope", "properties", limit=MAX_ID)
    if kind in (Kind.UNSUBSCRIBED, Kind.SUBSCRIBED):
        if scope is not None and not scope.strip():
            raise _fail("out_of_range", "properties.scope must be \"all\" or a journey's name")
        return ConsentInfo(scope=scope or "all")
    raw = _text(props, "email", "properties", limit=254,
                required=kind in (Kind.EMAIL_BOUNCED, Kind.EMAIL_MARKED_SPAM))
    address = None
    if raw is not None:
        address = canonical(raw.strip())
        if address is None:
            raise _fail("invalid_email", "properties.email is not a plain address (a dot-atom "
                        "local part at a DNS domain name)")
    bounce = ""
    if kind == Kind.EMAIL_BOUNCED:
        bounce = _text(props, "bounce_type", "properties", required=True, limit=16) or ""
        if bounce not in ("hard", "soft"):
            raise _fail("out_of_range",
                        f"properties.bounce_type must be \"hard\" or \"soft\", got {bounce!r:.20}")
    return ConsentInfo(address=address, bounce=bounce)


def _timestamp(doc: dict[str, Any], limits: Limits) -> int:
    raw = doc.get("timestamp")
    if raw is None:
        raise _fail("missing_timestamp", "timestamp is required (ISO-8601 with an offset)")
    if not isinstance(raw, str):
        raise _fail("bad_timestamp", f"timestamp must be an ISO-8601 string, got {raw!r:.40}")
    return _in_range(timestamp_ms(raw), raw, limits)


def _ids(doc: dict[str, Any], kind: int, limits: Limits) -> tuple[str, str | None, str | None]:
    """(customer key, anonymous id to link or None, refused identifier or None)."""
    uid = _text(doc, "userId", "record", limit=MAX_ID) or None
    if kind == Kind.ALIAS:
        prev = _text(doc, "previousId", "record", limit=MAX_ID) or None
        if uid is None or prev is None:
            raise _fail("missing_field", "alias needs a previousId and a userId")
        for name, value in (("userId", uid), ("previousId", prev)):
            if blocked(value, limits):
                raise _fail("blocked_id", f"{name} {value!r:.20} is a blocked identifier "
                                          "value (identity.blocked_ids)")
        return user_key(uid), prev, None
    aid = _text(doc, "anonymousId", "record", limit=MAX_ID) or None
    if uid is None and aid is None:
        raise _fail("missing_id", "neither userId nor anonymousId is set")
    ub = uid is not None and blocked(uid, limits)
    ab = aid is not None and blocked(aid, limits)
    if uid is not None and not ub:
        return user_key(uid), None if ab else aid, "anonymousId" if ab else None
    if aid is not None and not ab:
        return anonymous_key(aid), None, "userId" if ub else None
    shown = uid if uid is not None else aid
    raise _fail("blocked_id", f"{'userId' if uid is not None else 'anonymousId'} "
                              f"{shown!r:.20} is a blocked identifier value "
                              "(identity.blocked_ids), and no other identifier is set")


def _kind(doc: dict[str, Any], kind_name: Any, limits: Limits) -> int:
    if kind_name == "track":
        name = doc.get("event")
        if not isinstance(name, str):
            raise _fail("missing_field", "track needs an event name")
        kind = TRACK_NAMES.get(name)
        if kind is None:
            if name in limits.ignore or name in COUNTED_ONLY:
                raise Ignored(name)
            raise _fail("unknown_event", f"event {name!r:.80} is not a known e-commerce event")
        return kind
    if kind_name == "identify":
        return Kind.IDENTIFY
    if kind_name in ("page", "screen"):
        props = doc.get("properties")
        product = isinstance(props, dict) and props.get("product_id") not in (None, "")
        return Kind.PRODUCT_VIEWED if product else Kind.PAGE
    if kind_name == "alias":
        return Kind.ALIAS
    if kind_name == "group":
        raise Ignored("group")
    raise _fail("unknown_type", f"type {kind_name!r:.40} is not one of track, identify, page, "
                                "screen, group, alias")


def _full(doc: dict[str, Any], limits: Limits, offset: int, part: int = 0) -> Event:
    """Every call type, every check, each failure named."""
    kind = _kind(doc, doc.get("type"), limits)
    customer_id, anonymous_id, refused = _ids(doc, kind, limits)
    ev = _full_event(doc, kind, customer_id, limits, offset, part)
    if anonymous_id is not None:
        ev = ev.keyed(customer_id, anonymous_id)
    if refused is not None:
        raise Refused(ev, "blocked_id", f"{refused} is a blocked identifier value "
                                        "(identity.blocked_ids): the event was kept under the "
                                        "other identifier, without linking them")
    return ev


def _full_event(doc: dict[str, Any], kind: int, customer_id: str, limits: Limits,
                offset: int, part: int) -> Event:
    mid = doc.get("messageId")
    if mid is not None and not isinstance(mid, str):
        raise _fail("wrong_type", "messageId must be a string")
    if mid is not None and len(mid) > MAX_MESSAGE_ID:
        raise _fail("message_id_too_long",
                    f"messageId is {len(mid)} characters (max {MAX_MESSAGE_ID})")
    ts = _timestamp(doc, limits)
    mkey = mid or ""
    if kind == Kind.IDENTIFY:
        return Event(ts, customer_id, offset, part, kind, mkey, (), None, 0.0,
                     _traits(_identify_traits(doc)))
    if kind in (Kind.PAGE, Kind.ALIAS):
        return Event(ts, customer_id, offset, part, kind, mkey)
    props = doc.get("properties")
    if props is None:
        props = {}
    elif not isinstance(props, dict):
        raise _fail("wrong_type", "properties must be an object")
    if kind in SINGLE_PRODUCT:
        return Event(ts, customer_id, offset, part, kind, mkey, (_product(props, "properties"),))
    if kind == Kind.ORDER_COMPLETED:
        revenue = props.get("revenue", props.get("total"))
        return Event(ts, customer_id, offset, part, kind, mkey, _products(props),
                     _text(props, "order_id", "properties", limit=MAX_ID),
                     _number(revenue, "revenue", "properties"))
    if kind in (Kind.CART_VIEWED, Kind.CHECKOUT_STARTED):
        return Event(ts, customer_id, offset, part, kind, mkey, _products(props))
    if kind in EMAIL_KINDS:
        return Event(ts, customer_id, offset, part, kind, mkey,
                     email=_email_ref(props, customer_id))
    if kind in CONSENT_KINDS:
        return Event(ts, customer_id, offset, part, kind, mkey, consent=_consent(props, kind))
    return Event(ts, customer_id, offset, part, kind, mkey)


def parse_record(raw: bytes, limits: Limits, offset: int = 0, part: int = 0) -> Event:
    """One record -> one Event. Raises InputError (dead letter), Ignored, or Refused (the
    event, and a dead letter for the identifier it refused)."""
    if len(raw) > limits.max_payload:
        raise _fail("payload_too_large", f"{len(raw)} bytes (max {limits.max_payload})")
    event = _fast(raw, limits, offset, part)
    if event is not None:
        return event
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
        return _full(doc, limits, offset, part)
    raise _fail("not_an_object", f"record is a JSON {type(doc).__name__}, not an object")
