"""Mailgun `POST /v3/{domain}/messages` (documentation.mailgun.com, Messages API): Basic auth
`api:<key>`, form fields; `h:` custom headers, `o:tag`, `v:` user variables (they come back
in every webhook's `user-variables`); 200 with `id`."""

from __future__ import annotations

import orjson

from nudge.core.records import Email
from nudge.delivery.esps import Provider, Request, metadata, split_headers


def build(email: Email, url: str, key: str) -> Request:
    reply_to, headers = split_headers(email)
    form = [("from", email.from_addr), ("to", email.to), ("subject", email.subject),
            ("text", email.text), ("html", email.html)]
    form += [("o:tag", tag) for tag in email.tags[:10]]  # at most 3 in Mailgun's older plans
    form += [(f"h:{k}", v) for k, v in headers.items()]
    if reply_to:
        form.append(("h:Reply-To", reply_to))
    form += [(f"v:{k}", v) for k, v in metadata(email).items()]
    return Request(url, {}, form=form, auth=("api", key))


def receipt(status: int, headers: dict[str, str], body: bytes) -> str:
    try:
        return str(orjson.loads(body)["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"http {status}"


PROVIDER = Provider("mailgun", "https://api.mailgun.net/v3/{domain}/messages", build, receipt)
