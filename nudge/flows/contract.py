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
    the paths agree. The limits and checks both share are in nudge/flows/limits.py.

>>> from nudge.core.config import EventsConfig
>>> from nudge.core.records import Kind
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

import orjson

from nudge.core.events import Event
from nudge.flows.fastpath import read_fast
from nudge.flows.fullpath import read_full
from nudge.flows.limits import Ignored, Limits, Refused, fail

__all__ = ["Ignored", "Limits", "Refused", "parse_record"]


def parse_record(raw: bytes, limits: Limits, offset: int = 0, part: int = 0) -> Event:
    """One record -> one Event. Raises InputError (dead letter), Ignored, or Refused (the
    event, and a dead letter for the identifier it refused)."""
    if len(raw) > limits.max_payload:
        raise fail("payload_too_large", f"{len(raw)} bytes (max {limits.max_payload})")
    event = read_fast(raw, limits, offset, part)
    if event is not None:
        return event
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            raise fail("empty_record", "empty record") from None
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise fail("invalid_utf8", "record is not valid UTF-8") from None
        raise fail("invalid_json", f"not valid JSON: {exc}") from None
    if type(doc) is dict:
        return read_full(doc, limits, offset, part)
    raise fail("not_an_object", f"record is a JSON {type(doc).__name__}, not an object")

