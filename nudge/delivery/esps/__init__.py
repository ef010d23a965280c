"""The request formats of the ESPs' send APIs, one module each, pure (no HTTP): each turns an
Email into a Request, and reads the provider's message id from its answer.
nudge/delivery/esp.py sends them over httpx (the one HTTP client boundary).

Every email carries what maps the provider's webhooks back to it (`metadata`): the customer,
journey, episode, stage and the email key, as SendGrid custom args, Postmark metadata,
Mailgun user variables or Resend tags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from nudge.core.records import Email


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    headers: dict[str, str]
    json: Any = None  # a JSON body, or
    form: list[tuple[str, str]] = field(default_factory=list)  # form fields (Mailgun)
    auth: tuple[str, str] | None = None  # Basic auth


def metadata(email: Email) -> dict[str, str]:
    return {"nudge_customer": email.customer_id, "nudge_trigger": email.trigger,
            "nudge_episode": str(email.episode), "nudge_stage": str(email.stage),
            "nudge_key": email.key}


def split_headers(email: Email) -> tuple[str | None, dict[str, str]]:
    """(Reply-To, the other headers): every API takes the reply address as a field of its
    own and refuses it among the custom headers."""
    reply_to = None
    rest = {}
    for name, value in email.headers:
        if name.lower() == "reply-to":
            reply_to = value
        else:
            rest[name] = value
    return reply_to, rest


def address(value: str) -> dict[str, str]:
    name, addr = parseaddr(value)
    return {"email": addr, **({"name": name} if name else {})}


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    default_url: str  # may hold {domain}
    build: Callable[[Email, str, str], Request]  # (email, url, api key) -> Request
    receipt: Callable[[int, dict[str, str], bytes], str]  # (status, headers, body) -> id


def provider(name: str) -> Provider:
    from nudge.delivery.esps import mailgun, postmark, resend, sendgrid

    return {"sendgrid": sendgrid.PROVIDER, "postmark": postmark.PROVIDER,
            "mailgun": mailgun.PROVIDER, "resend": resend.PROVIDER}[name]
