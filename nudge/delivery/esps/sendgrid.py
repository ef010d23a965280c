"""SendGrid v3 `POST /v3/mail/send` (docs.sendgrid.com, Mail Send API): Bearer key, JSON;
202 Accepted with the id in `X-Message-Id`."""

from __future__ import annotations

from nudge.core.records import Email
from nudge.delivery.esps import Provider, Request, address, metadata, split_headers


def build(email: Email, url: str, key: str) -> Request:
    reply_to, headers = split_headers(email)
    body = {
        "personalizations": [{"to": [{"email": email.to}]}],
        "from": address(email.from_addr),
        "subject": email.subject,
        "content": [{"type": "text/plain", "value": email.text},
                    {"type": "text/html", "value": email.html}],
        "headers": headers,
        "categories": list(email.tags),
        "custom_args": metadata(email),
    }
    if reply_to:
        body["reply_to"] = address(reply_to)
    return Request(url, {"Authorization": f"Bearer {key}"}, json=body)


def receipt(status: int, headers: dict[str, str], body: bytes) -> str:
    return headers.get("x-message-id") or f"http {status}"


PROVIDER = Provider("sendgrid", "https://api.sendgrid.com/v3/mail/send", build, receipt)
