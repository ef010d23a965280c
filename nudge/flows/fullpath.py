"""The full parsing path: every call type, every check, each failure named.

Reads a plain dict (anything the fast path, nudge/flows/fastpath.py, does not accept: wrong
types, aliases such as `sku`, nulls, unknown names), accepts what it can and names the field
that is wrong.
"""

from __future__ import annotations

import math
from typing import Any

from nudge.core.address import canonical
from nudge.core.events import (
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
from nudge.core.ids import anonymous_key, user_key
from nudge.flows.limits import (
    SINGLE_PRODUCT,
    Ignored,
    Limits,
    Refused,
    blocked,
    fail,
    in_range,
    timestamp_ms,
    valid_timezone,
)
from nudge.flows.wire import (
    MAX_CATEGORY,
    MAX_ID,
    MAX_MESSAGE_ID,
    MAX_PRODUCTS,
    MAX_QUANTITY,
    MAX_TEXT,
)


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool = False,
          limit: int = MAX_TEXT) -> str | None:
    value = obj.get(key)
    if type(value) is str and len(value) <= limit:
        return value
    if value is None:
        if required:
            raise fail("missing_field", f"{where}.{key} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise fail("wrong_type", f"{where}.{key} must be a string, got {type(value).__name__}")
    text = str(value)
    if len(text) > limit:
        raise fail("field_too_long", f"{where}.{key} is {len(text)} characters (max {limit})")
    return text


def _number(value: Any, key: str, where: str, default: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail("wrong_type", f"{where}.{key} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise fail("out_of_range", f"{where}.{key} must be a finite number >= 0, got {value}")
    return float(value)


def _product(obj: Any, where: str) -> Product:
    if not isinstance(obj, dict):
        raise fail("wrong_type", f"{where} must be an object")
    pid = (_text(obj, "product_id", where, limit=MAX_ID) or _text(obj, "sku", where, limit=MAX_ID)
           or _text(obj, "id", where, limit=MAX_ID))
    if not pid:
        raise fail("missing_field", f"{where}.product_id (or sku) is required")
    qty = obj.get("quantity", 1)
    if type(qty) is not int:
        raise fail("wrong_type", f"{where}.quantity must be an integer, got {type(qty).__name__}")
    if qty < 1 or qty > MAX_QUANTITY:
        raise fail("out_of_range", f"{where}.quantity must be between 1 and 10000, got {qty}")
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
        raise fail("wrong_type", "properties.products must be a list")
    if len(items) > MAX_PRODUCTS:
        raise fail("out_of_range", f"properties.products has {len(items)} items (max 200)")
    return tuple(_product(p, f"properties.products[{i}]") for i, p in enumerate(items))



def _traits(obj: Any) -> Traits:
    if obj is None:
        return Traits()
    if not isinstance(obj, dict):
        raise fail("wrong_type", "traits must be an object")
    email = _text(obj, "email", "traits", limit=254)
    if email is not None:
        email = canonical(email.strip())
        if email is None:
            raise fail("invalid_email", "traits.email is not a plain address (a dot-atom "
                        "local part at a DNS domain name)")
    tz = _text(obj, "timezone", "traits", limit=64)
    if tz is not None and not valid_timezone(tz):
        raise fail("invalid_timezone", f"traits.timezone {tz!r} is not an IANA timezone")
    consent = obj.get("marketing_consent")
    if consent is not None and not isinstance(consent, bool):
        raise fail("wrong_type", "traits.marketing_consent must be true or false")
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
            raise fail("missing_field", "properties.stage is required with email_key")
        raise fail("wrong_type",
                    f"properties.stage must be an integer, got {type(stage).__name__}")
    if stage < 1:
        raise fail("out_of_range", f"properties.stage must be 1 or more, got {stage}")
    machine = props.get("machine", False)
    if machine is None:
        machine = False
    if type(machine) is not bool:
        raise fail("wrong_type", "properties.machine must be true or false")
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
            raise fail("out_of_range", "properties.scope must be \"all\" or a journey's name")
        return ConsentInfo(scope=scope or "all")
    raw = _text(props, "email", "properties", limit=254,
                required=kind in (Kind.EMAIL_BOUNCED, Kind.EMAIL_MARKED_SPAM))
    address = None
    if raw is not None:
        address = canonical(raw.strip())
        if address is None:
            raise fail("invalid_email", "properties.email is not a plain address (a dot-atom "
                        "local part at a DNS domain name)")
    bounce = ""
    if kind == Kind.EMAIL_BOUNCED:
        bounce = _text(props, "bounce_type", "properties", required=True, limit=16) or ""
        if bounce not in ("hard", "soft"):
            raise fail("out_of_range",
                        f"properties.bounce_type must be \"hard\" or \"soft\", got {bounce!r:.20}")
    return ConsentInfo(address=address, bounce=bounce)


def _timestamp(doc: dict[str, Any], limits: Limits) -> int:
    raw = doc.get("timestamp")
    if raw is None:
        raise fail("missing_timestamp", "timestamp is required (ISO-8601 with an offset)")
    if not isinstance(raw, str):
        raise fail("bad_timestamp", f"timestamp must be an ISO-8601 string, got {raw!r:.40}")
    return in_range(timestamp_ms(raw), raw, limits)


def _ids(doc: dict[str, Any], kind: int, limits: Limits) -> tuple[str, str | None, str | None]:
    """(customer key, anonymous id to link or None, refused identifier or None)."""
    uid = _text(doc, "userId", "record", limit=MAX_ID) or None
    if kind == Kind.ALIAS:
        prev = _text(doc, "previousId", "record", limit=MAX_ID) or None
        if uid is None or prev is None:
            raise fail("missing_field", "alias needs a previousId and a userId")
        for name, value in (("userId", uid), ("previousId", prev)):
            if blocked(value, limits):
                raise fail("blocked_id", f"{name} {value!r:.20} is a blocked identifier "
                                          "value (identity.blocked_ids)")
        return user_key(uid), prev, None
    aid = _text(doc, "anonymousId", "record", limit=MAX_ID) or None
    if uid is None and aid is None:
        raise fail("missing_id", "neither userId nor anonymousId is set")
    ub = uid is not None and blocked(uid, limits)
    ab = aid is not None and blocked(aid, limits)
    if uid is not None and not ub:
        return user_key(uid), None if ab else aid, "anonymousId" if ab else None
    if aid is not None and not ab:
        return anonymous_key(aid), None, "userId" if ub else None
    shown = uid if uid is not None else aid
    raise fail("blocked_id", f"{'userId' if uid is not None else 'anonymousId'} "
                              f"{shown!r:.20} is a blocked identifier value "
                              "(identity.blocked_ids), and no other identifier is set")


def _kind(doc: dict[str, Any], kind_name: Any, limits: Limits) -> int:
    if kind_name == "track":
        name = doc.get("event")
        if not isinstance(name, str):
            raise fail("missing_field", "track needs an event name")
        kind = TRACK_NAMES.get(name)
        if kind is None:
            if name in limits.ignore or name in COUNTED_ONLY:
                raise Ignored(name)
            raise fail("unknown_event", f"event {name!r:.80} is not a known e-commerce event")
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
    raise fail("unknown_type", f"type {kind_name!r:.40} is not one of track, identify, page, "
                                "screen, group, alias")


def read_full(doc: dict[str, Any], limits: Limits, offset: int, part: int = 0) -> Event:
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
        raise fail("wrong_type", "messageId must be a string")
    if mid is not None and len(mid) > MAX_MESSAGE_ID:
        raise fail("message_id_too_long",
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
        raise fail("wrong_type", "properties must be an object")
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

