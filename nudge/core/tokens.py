"""Signed tokens for the links in an email: unsubscribe, open pixel, tracked click.

A token is `<key id>.<body>.<mac>`, URL-safe (base64url without padding, `.` between):

- body: the claims as a compact JSON array `[1, purpose, customer id, trigger, episode,
  stage, variant, url, expires]` (1 is the format version; purpose "u", "o" or "c");
- mac: HMAC-SHA256 under the key `key id` names, over a context string, the key id and the
  body, truncated to 128 bits.

The claims are readable by whoever holds the email (they name its own recipient) but cannot
be changed: the signature covers the key id and every claim, so a token for one purpose,
customer, email or link is useless for another. `expires` is event time (the email's due time
plus the configured lifetime), so the same email always carries the same token.

>>> from nudge.core.keyring import Keyring
>>> ring = Keyring({"k1": b"s" * 32}, signing_id="k1")
>>> claims = Claims("unsubscribe", "cust-42", "cart_abandonment", 1, 2, "urgency", "",
...                 expires=1_800_000_000_000)
>>> token = sign(ring, claims)
>>> token
'k1.WzEsInUiLCJjdXN0LTQyIiwiY2FydF9hYmFuZG9ubWVudCIsMSwyLCJ1cmdlbmN5IiwiIiwxODAwMDAwMDAwMDAwXQ.jhRczCv7l-ls-AohsZ_hQw'
>>> got = verify(ring, token, purpose="unsubscribe", now=1_700_000_000_000)
>>> got.customer_id, got.trigger, got.stage, got.variant, got.key_id
('cust-42', 'cart_abandonment', 2, 'urgency', 'k1')
>>> got.email_key == "cust-42\\x1fcart_abandonment\\x1f1\\x1f2"
True

Every way a token can be wrong is its own error (a TokenError; `.status` is the HTTP status
a web service answers with):

>>> verify(ring, token.replace("WzEs", "WzIs"), purpose="unsubscribe", now=0)
Traceback (most recent call last):
...
nudge.core.tokens.ForgedToken: token signature does not match (forged or altered)
>>> verify(ring, token, purpose="click", now=0)
Traceback (most recent call last):
...
nudge.core.tokens.WrongPurpose: token is for unsubscribe, not click
>>> verify(ring, token, purpose="unsubscribe", now=1_900_000_000_000)
Traceback (most recent call last):
...
nudge.core.tokens.ExpiredToken: token expired at 2027-01-15T08:00:00Z
>>> verify(ring, "k9" + token[2:], purpose="unsubscribe", now=0)
Traceback (most recent call last):
...
nudge.core.tokens.UnknownKeyToken: unknown key id 'k9'
>>> verify(ring, "not a token", purpose="unsubscribe", now=0).customer_id
Traceback (most recent call last):
...
nudge.core.tokens.MalformedToken: not a token (expected key.body.mac)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from dataclasses import dataclass
from typing import Final, Literal

import orjson

from nudge.core.keyring import Keyring, UnknownKeyError
from nudge.core.timefmt import to_iso

Purpose = Literal["unsubscribe", "open", "click"]
PURPOSES: Final = ("unsubscribe", "open", "click")
_CODE: Final[dict[str, str]] = {"unsubscribe": "u", "open": "o", "click": "c"}
_PURPOSE: Final[dict[str, Purpose]] = {"u": "unsubscribe", "o": "open", "c": "click"}
VERSION: Final = 1
MAC_BYTES: Final = 16
MAX_TOKEN: Final = 4096  # a click token carries its URL; anything longer is not ours
_CONTEXT: Final = b"nudge token v1\x00"
_B64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A token that does not verify. `status`: the HTTP answer for it."""

    status = 400


class MalformedToken(TokenError):
    """Not shaped like a token at all (truncated, not base64, not ours)."""


class ForgedToken(TokenError):
    """The signature does not match: the token was made up, or a claim was altered."""

    status = 403


class UnknownKeyToken(TokenError):
    """Signed with a key the keyring does not hold, or one retired beyond the window."""

    status = 403


class ExpiredToken(TokenError):
    """Valid, but past its expiry."""

    status = 410


class WrongPurpose(TokenError):
    """Valid, but made for another purpose (an open token used to unsubscribe)."""


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says. `url` is set for clicks only; `key_id` is filled in by verify."""

    purpose: Purpose
    customer_id: str
    trigger: str
    episode: int
    stage: int
    variant: str | None
    url: str
    expires: int  # event-time ms
    key_id: str = ""

    @property
    def email_key(self) -> str:
        """The email's idempotency key (the ledger's key: customer, trigger, episode, stage)."""
        return f"{self.customer_id}\x1f{self.trigger}\x1f{self.episode}\x1f{self.stage}"


def for_email(purpose: Purpose, customer_id: str, trigger: str, episode: int, stage: int,
              variant: str | None, *, due: int, lifetime: int, url: str = "") -> Claims:
    """The claims of a link in the email of (customer, trigger, episode, stage) due at `due`."""
    return Claims(purpose, customer_id, trigger, episode, stage, variant, url, due + lifetime)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, key_id: str, body: str) -> bytes:
    return hmac.digest(secret, _CONTEXT + f"{key_id}.{body}".encode("ascii"),
                       "sha256")[:MAC_BYTES]


def sign(keyring: Keyring, claims: Claims) -> str:
    """The token for `claims`, signed with the keyring's signing key."""
    body = _b64(orjson.dumps([
        VERSION, _CODE[claims.purpose], claims.customer_id, claims.trigger, claims.episode,
        claims.stage, claims.variant or "", claims.url, claims.expires]))
    key_id = keyring.signing_id
    return f"{key_id}.{body}.{_b64(_mac(keyring.signing_secret, key_id, body))}"


def verify(keyring: Keyring, token: str, *, purpose: Purpose, now: int) -> Claims:
    """The claims of a token made by `sign` for `purpose`, still valid at `now` (ms; a web
    service passes the wall clock). Raises a TokenError subclass otherwise."""
    if len(token) > MAX_TOKEN or not token.isascii():
        raise MalformedToken("not a token (too long or not ASCII)")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise MalformedToken("not a token (expected key.body.mac)")
    key_id, body, mac_text = parts
    if not (_B64URL.fullmatch(body) and _B64URL.fullmatch(mac_text)):
        raise MalformedToken("not a token (not base64url)")
    try:
        mac = _unb64(mac_text)
    except binascii.Error:  # a length no encoder produces
        raise MalformedToken("not a token (not base64url)") from None
    try:
        secret = keyring.secret_for(key_id, now=now)
    except UnknownKeyError as exc:
        raise UnknownKeyToken(str(exc)) from None
    if not hmac.compare_digest(mac, _mac(secret, key_id, body)):
        raise ForgedToken("token signature does not match (forged or altered)")
    try:
        fields = orjson.loads(_unb64(body))
        version, code, customer, trigger, episode, stage, variant, url, expires = fields
        claims = Claims(_PURPOSE[code], customer, trigger, int(episode), int(stage),
                        variant or None, url, int(expires), key_id)
    except (binascii.Error, ValueError, TypeError, KeyError):
        # Signed by us but unreadable: a token of a format this version does not know.
        raise MalformedToken("token body is not a known format") from None
    if version != VERSION:
        raise MalformedToken(f"token format version {version} is not supported")
    if claims.purpose != purpose:
        raise WrongPurpose(f"token is for {claims.purpose}, not {purpose}")
    if now > claims.expires:
        raise ExpiredToken(f"token expired at {to_iso(claims.expires)}")
    return claims

