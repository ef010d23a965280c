"""Segment's HTTP Tracking API, as the messages it turns into Kafka records. Pure: no HTTP.

A request is `/v1/track`, `/v1/identify`, `/v1/page`, `/v1/screen`, `/v1/group`, `/v1/alias`
(one message, the type given by the path) or `/v1/batch` (`/v1/b`; `{"batch": [...]}`, with
`context` and `integrations` beside it applying to every message). Each message is checked
with the flow's own contract (nudge/flows/contract.py), so what the flow would dead-letter is
refused here, at the edge, with the same reason code, while the SDK is still there to hear it;
the good messages of a batch are kept whatever the bad ones are.

What a message gains on its way to the topic:
  - `messageId`, when missing: a digest of the message, so an SDK's retry of the same message
    carries the same id and the flow drops the copy;
  - `receivedAt`, the collector's clock; and `timestamp` = `receivedAt` when the SDK sent none.

>>> c = Collector(EventsConfig(), max_message=32 * 1024)
>>> out = c.collect("batch", {"batch": [
...     {"type": "track", "event": "Product Viewed", "userId": "c1",
...      "timestamp": "2026-10-05T10:00:00Z", "properties": {"product_id": "p1"}},
...     {"type": "track", "event": "Product Viewed", "timestamp": "2026-10-05T10:00:00Z"}]},
...     now_ms=1_800_000_000_000)
>>> [(r.key, r.message_id[:6]) for r in out.records]
[(b'c1', 'nudge-')]
>>> [(r.index, r.reason) for r in out.rejected]
[(1, 'missing_id')]
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from nudge.core.config import EventsConfig
from nudge.core.errors import InputError
from nudge.core.timefmt import to_iso
from nudge.flows.contract import Ignored, Limits, Refused, parse_record

TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_BATCH_MESSAGES = 2500  # 500 KB of the smallest useful messages


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: str
    detail: str


class Record(NamedTuple):
    key: bytes  # the customer id: one customer's events stay in one partition, in order
    value: bytes
    message_id: str

    def headers(self) -> list[tuple[str, str | bytes | None]]:
        return [("messageId", self.message_id.encode())]


@dataclass
class Collected:
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: int = 0  # valid, and of no use to the flow (page, screen, events.ignore)


class RequestError(Exception):
    """The whole request is refused (HTTP status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def write_key(authorization: str | None, body: Any) -> str | None:
    """The write key: the Basic-auth user (Segment's documented way), else the body's
    `writeKey` (older SDKs send both)."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            user = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0] or None
    if isinstance(body, dict):
        key = body.get("writeKey")
        if isinstance(key, str) and key:
            return key
    return None


def authorized(key: str | None, keys: tuple[str, ...]) -> bool:
    if not key:
        return False
    given = key.encode()
    # every key compared, in constant time each: the answer's timing names none of them
    return any([hmac.compare_digest(given, k.encode()) for k in keys])


def _customer(doc: dict[str, Any]) -> str | None:
    for name in ("userId", "anonymousId"):
        value = doc.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    return None


class Collector:
    def __init__(self, events: EventsConfig, *, max_message: int) -> None:
        self.events = events
        self.max_message = max_message

    def collect(self, kind: str, body: Any, *, now_ms: int) -> Collected:
        """`kind` is the path's type, or "batch". Raises RequestError for a body that is
        not a Segment request at all."""
        if not isinstance(body, dict):
            raise RequestError(400, "not_an_object", "the body must be a JSON object")
        if kind == "batch":
            items = body.get("batch")
            if not isinstance(items, list):
                raise RequestError(400, "missing_field", "a batch needs a `batch` list")
            if len(items) > MAX_BATCH_MESSAGES:
                raise RequestError(413, "payload_too_large",
                                   f"{len(items)} messages (max {MAX_BATCH_MESSAGES})")
            shared = {k: body[k] for k in ("context", "integrations") if k in body}
        else:
            items = [{**body, "type": kind}]
            shared = {}
        limits = Limits.from_config(self.events, now_ms=now_ms)
        received = to_iso(now_ms)
        out = Collected()
        for i, item in enumerate(items):
            try:
                record = self._prepare(item, shared, received)
                parse_record(record.value, limits)  # the flow's own checks and reasons
            except InputError as exc:
                out.rejected.append(Rejection(i, exc.reason, exc.detail))
                continue
            except Ignored:
                out.ignored += 1
            except Refused:
                pass  # valid under its other id: the flow dead-letters the refused one
            out.records.append(record)
        return out

    def _prepare(self, item: Any, shared: dict[str, Any], received: str) -> Record:
        if not isinstance(item, dict):
            raise InputError("not_an_object", "a message must be a JSON object")
        if shared:
            item = {**shared, **item}
        if "writeKey" in item:  # a credential, not event data: it never reaches the topic
            item = {k: v for k, v in item.items() if k != "writeKey"}
        kind = item.get("type")
        if kind not in TYPES:
            raise InputError("unknown_type", f"type {kind!r:.40} is not one of "
                             f"{', '.join(TYPES)}")
        customer = _customer(item)
        if customer is None:
            raise InputError("missing_id", "neither userId nor anonymousId is set")
        raw = orjson.dumps(item)
        if len(raw) > self.max_message:
            raise InputError("payload_too_large",
                             f"message of {len(raw)} bytes (max {self.max_message})")
        mid = item.get("messageId")
        if not isinstance(mid, str) or not mid:
            if mid is not None and not isinstance(mid, str):
                raise InputError("wrong_type", "messageId must be a string")
            mid = "nudge-" + hashlib.sha256(raw).hexdigest()[:32]
            item["messageId"] = mid
        if item.get("timestamp") is None:
            item["timestamp"] = received
        item["receivedAt"] = received
        return Record(customer.encode(), orjson.dumps(item), mid)
