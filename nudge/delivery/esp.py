"""An ESP's HTTP API over httpx: the only module that imports httpx. The request formats
(SendGrid, Postmark, Mailgun, Resend) are in nudge/delivery/esps/, chosen by
`delivery.esp.provider`. Responses and httpx errors are translated here into the DeliveryError tree:

    2xx                          accepted (the X-Message-Id header, if any, is the receipt)
    429                          TransientDeliveryError, with Retry-After (seconds or a date)
    5xx, timeouts, resets        TransientDeliveryError
    other 4xx                    PermanentDeliveryError, with the status and response body
"""

from __future__ import annotations

import logging
import os
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from nudge.core.deliveryconfig import EspConfig
from nudge.core.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from nudge.core.ids import key_digest
from nudge.core.records import Email
from nudge.delivery.esps import Provider, provider, sendgrid

# httpx logs every request at INFO: one line per email, thousands a second in a busy
# hour, and they bury the warnings ops need. Failures reach the log through the
# DeliveryError tree (nudge/flows/deliver.py), with the customer id hashed.
logging.getLogger("httpx").setLevel(logging.WARNING)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def payload(email: Email) -> dict[str, Any]:
    """SendGrid's request body for `email` (the default provider)."""
    body: dict[str, Any] = sendgrid.build(email, "", "").json
    return body


def _form(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    # repeated names (o:tag) as lists: httpx encodes each value as its own field
    out: dict[str, list[str]] = {}
    for name, value in fields:
        out.setdefault(name, []).append(value)
    return out


def _maybe_sent(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the ESP: anything but failing to connect (or to
    get a pooled connection) happened after some of it was written."""
    return not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


class EspTransport:
    name = "esp"

    def __init__(self, config: EspConfig, *, api_key: str | None = None,
                 client: httpx.Client | None = None, kind: Provider | None = None) -> None:
        key = api_key if api_key is not None else os.environ.get(config.api_key_env)
        if not key:
            raise ConfigError("delivery.esp.api_key_env",
                              f"environment variable {config.api_key_env} is not set")
        self.provider = kind or provider(config.provider)
        self.url = config.url or self.provider.default_url.format(domain=config.domain)
        self.key = key
        self.client = client or httpx.Client(timeout=config.timeout / 1000)

    def send(self, email: Email) -> str:
        import time

        # An idempotency key lets ESPs that support it drop the copy a retry sends after a
        # timeout that hid an acceptance; without it a timeout can mean a duplicate.
        req = self.provider.build(email, self.url, self.key)
        headers = {**req.headers,
                   "Idempotency-Key": key_digest(email.key)}
        try:
            extra: dict[str, Any] = {} if req.auth is None else {"auth": req.auth}
            if req.form:
                resp = self.client.post(req.url, data=_form(req.form), headers=headers, **extra)
            else:
                resp = self.client.post(req.url, json=req.json, headers=headers, **extra)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(f"ESP {self.url}: timed out ({type(exc).__name__})",
                                         maybe_sent=_maybe_sent(exc)) from None
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"ESP {self.url}: {type(exc).__name__}: {exc}",
                                         maybe_sent=_maybe_sent(exc)) from None
        status = resp.status_code
        if 200 <= status < 300:
            return self.provider.receipt(status, {k.lower(): v for k, v in resp.headers.items()},
                                         resp.content)
        body = resp.text[:2048]
        if status == 429:
            raise TransientDeliveryError(
                f"ESP {self.url}: rate limited", status=status, response=body,
                retry_after=retry_after(resp.headers.get("Retry-After"), time.time()))
        if status >= 500 or status == 408:
            raise TransientDeliveryError(f"ESP {self.url}: server error", status=status,
                                         response=body)
        raise PermanentDeliveryError(f"ESP {self.url}: refused", status=status, response=body)

    def close(self) -> None:
        self.client.close()
