"""An ESP's HTTP API (SendGrid v3 `mail/send` shape) over httpx: the only module that
imports httpx. Responses and httpx errors are translated here into the DeliveryError tree:

    2xx                          accepted (the X-Message-Id header, if any, is the receipt)
    429                          TransientDeliveryError, with Retry-After (seconds or a date)
    5xx, timeouts, resets        TransientDeliveryError
    other 4xx                    PermanentDeliveryError, with the status and response body
"""

from __future__ import annotations

import hashlib
import logging
import os
from email.utils import parseaddr, parsedate_to_datetime
from typing import Any

import httpx

from nudge.core.config import EspConfig
from nudge.core.errors import ConfigError, PermanentDeliveryError, TransientDeliveryError
from nudge.core.records import Email

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
    name, addr = parseaddr(email.from_addr)
    headers = {k: v for k, v in email.headers}
    return {
        "personalizations": [{"to": [{"email": email.to}]}],
        "from": {"email": addr, **({"name": name} if name else {})},
        "subject": email.subject,
        "content": [{"type": "text/plain", "value": email.text},
                    {"type": "text/html", "value": email.html}],
        "headers": headers,
        "categories": list(email.tags),
        "custom_args": {"nudge_key": hashlib.sha256(email.key.encode()).hexdigest()[:32]},
    }


class EspTransport:
    name = "esp"

    def __init__(self, config: EspConfig, *, api_key: str | None = None,
                 client: httpx.Client | None = None) -> None:
        key = api_key if api_key is not None else os.environ.get(config.api_key_env)
        if not key:
            raise ConfigError("delivery.esp.api_key_env",
                              f"environment variable {config.api_key_env} is not set")
        self.url = config.url or "https://api.sendgrid.com/v3/mail/send"
        self.client = client or httpx.Client(timeout=config.timeout / 1000)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def send(self, email: Email) -> str:
        import time

        # An idempotency key lets ESPs that support it drop the copy a retry sends after a
        # timeout that hid an acceptance; without it a timeout can mean a duplicate.
        headers = {**self.headers,
                   "Idempotency-Key": hashlib.sha256(email.key.encode()).hexdigest()[:32]}
        try:
            resp = self.client.post(self.url, json=payload(email), headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientDeliveryError(f"ESP {self.url}: timed out ({type(exc).__name__})") \
                from None
        except httpx.TransportError as exc:
            raise TransientDeliveryError(f"ESP {self.url}: {type(exc).__name__}: {exc}") \
                from None
        status = resp.status_code
        if 200 <= status < 300:
            return resp.headers.get("X-Message-Id") or f"http {status}"
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
