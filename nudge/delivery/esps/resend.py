"""Resend `POST /emails` (resend.com/docs/api-reference/emails/send-email): Bearer key, JSON;
200 with `id`. Resend honours `Idempotency-Key` (set by nudge/delivery/esp.py for every
provider), so a retry after a timeout is not sent twice. Tag names and values may hold only
ASCII letters, digits, `_` and `-`: the email key travels as its digest."""

from __future__ import annotations

import re

import orjson

from nudge.core.ids import key_digest
from nudge.core.records import Email
from nudge.delivery.esps import Provider, Request, split_headers

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _tag(value: str) -> str:
    return _UNSAFE.sub("_", value)[:256]


def build(email: Email, url: str, key: str) -> Request:
    reply_to, headers = split_headers(email)
    body = {
        "from": email.from_addr,
        "to": [email.to],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
        "headers": headers,
        "tags": [{"name": "nudge_trigger", "value": _tag(email.trigger)},
                 {"name": "nudge_stage", "value": str(email.stage)},
                 {"name": "nudge_key",
                  "value": key_digest(email.key)}],
    }
    if reply_to:
        body["reply_to"] = reply_to
    return Request(url, {"Authorization": f"Bearer {key}"}, json=body)


def receipt(status: int, headers: dict[str, str], body: bytes) -> str:
    try:
        return str(orjson.loads(body)["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"http {status}"


PROVIDER = Provider("resend", "https://api.resend.com/emails", build, receipt)
