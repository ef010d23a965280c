"""Postmark `POST /email` (postmarkapp.com/developer/api/email-api): the server token in
`X-Postmark-Server-Token`, JSON with PascalCase fields; 200 with `MessageID`. Marketing email
goes to the `broadcast` message stream, as Postmark requires."""

from __future__ import annotations

import orjson

from nudge.core.records import Email
from nudge.delivery.esps import Provider, Request, metadata, split_headers


def build(email: Email, url: str, key: str) -> Request:
    reply_to, headers = split_headers(email)
    body = {
        "From": email.from_addr,
        "To": email.to,
        "Subject": email.subject,
        "HtmlBody": email.html,
        "TextBody": email.text,
        "Headers": [{"Name": k, "Value": v} for k, v in headers.items()],
        "Tag": email.trigger,  # one tag per message
        "Metadata": metadata(email),
        "MessageStream": "broadcast",
        "TrackOpens": False,  # Nudge's own tracking, when enabled, already is in the body
        "TrackLinks": "None",
    }
    if reply_to:
        body["ReplyTo"] = reply_to
    return Request(url, {"X-Postmark-Server-Token": key, "Accept": "application/json"},
                   json=body)


def receipt(status: int, headers: dict[str, str], body: bytes) -> str:
    try:
        return str(orjson.loads(body)["MessageID"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"http {status}"


PROVIDER = Provider("postmark", "https://api.postmarkapp.com/email", build, receipt)
