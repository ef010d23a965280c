"""Opens, clicks and unsubscribes: `/o/{token}`, `/c/{token}`, `/u/{token}`.

Every token is verified (nudge/core/tokens.py: HMAC, key id, rotation, expiry); a forged,
altered, expired or wrong-purpose token gets its 4xx and produces nothing. A click redirects
only to the URL signed into its token, so the service is never an open redirect. Opens and
clicks from link scanners and mail-privacy proxies (`tracking.machine_agents`, no User-Agent
at all, or a HEAD request) are recorded with `machine: true`, which engagement and
attribution do not count as a person.

An unsubscribe is answered only after its `Unsubscribed` event is on the topic: a 200 means
the flow will see it. `POST /u/{token}` with the body `List-Unsubscribe=One-Click` is RFC
8058's one-click unsubscribe (scope all, no further step); the page's own form posts a scope.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import parse_qs

from nudge.core.config import Config
from nudge.core.keyring import Keyring
from nudge.core.tokens import Claims, Purpose, TokenError, verify
from nudge.serve import http, pages
from nudge.serve.collector import Record
from nudge.serve.engagement import track
from nudge.serve.metrics import Metrics

Produce = Callable[[Sequence[Record]], Awaitable[None]]

# The smallest transparent GIF
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000"
                      "010001000002024401003b")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
PAGE_HEADERS = {**NO_STORE, "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                           "form-action 'self'; frame-ancestors 'none'"}


def one_click(body: bytes, content_type: str) -> bool:
    """RFC 8058: `List-Unsubscribe=One-Click`, form-urlencoded or multipart/form-data."""
    if content_type.startswith("multipart/form-data"):
        return b'name="List-Unsubscribe"' in body and b"One-Click" in body
    try:
        fields = parse_qs(body.decode("ascii"))
    except UnicodeDecodeError:
        return False
    return fields.get("List-Unsubscribe") == ["One-Click"]


class Tracking:
    def __init__(self, config: Config, metrics: Metrics, keyring: Keyring, produce: Produce,
                 machine: Callable[[str], bool]) -> None:
        self.config = config
        self.metrics = metrics
        self.keyring = keyring
        self.produce = produce
        self.machine = machine

    def _claims(self, token: str, purpose: Purpose, now: int) -> Claims | TokenError:
        try:
            return verify(self.keyring, token, purpose=purpose, now=now)
        except TokenError as exc:
            self.metrics.refused.labels(type(exc).__name__).inc()
            return exc

    def _base(self, c: Claims) -> dict[str, object]:
        return {"email_key": c.email_key, "trigger": c.trigger, "stage": c.stage,
                "variant": c.variant}

    def _is_machine(self, req: http.Incoming) -> bool:
        return req.method == "HEAD" or self.machine(req.header("user-agent") or "")

    async def open(self, req: http.Incoming) -> http.Outgoing:
        now = int(time.time() * 1000)
        token = req.params["token"]
        claims = self._claims(token, "open", now)
        if isinstance(claims, TokenError):
            return http.Outgoing(claims.status, PIXEL, "image/gif", NO_STORE)
        machine = self._is_machine(req)
        record = track("Email Opened", claims.customer_id,
                       {**self._base(claims), "machine": machine}, now,
                       f"{token}:{now // 1000}")
        try:
            await self.produce([record])
        except http.Unavailable:
            return http.Outgoing(503, PIXEL, "image/gif", {**NO_STORE, "Retry-After": "1"})
        self.metrics.tracking.labels("open", str(machine).lower()).inc()
        return http.Outgoing(200, PIXEL, "image/gif", NO_STORE)

    async def click(self, req: http.Incoming) -> http.Outgoing:
        now = int(time.time() * 1000)
        token = req.params["token"]
        claims = self._claims(token, "click", now)
        if isinstance(claims, TokenError):
            return http.Outgoing(claims.status, pages.refused(str(claims)),
                                 "text/html; charset=utf-8", PAGE_HEADERS)
        if not claims.url.startswith(("https://", "http://")):
            return http.Outgoing(400, pages.refused("This link has no web address."),
                                 "text/html; charset=utf-8", PAGE_HEADERS)
        machine = self._is_machine(req)
        record = track("Email Link Clicked", claims.customer_id,
                       {**self._base(claims), "url": claims.url, "machine": machine}, now,
                       f"{token}:{now // 1000}")
        try:
            await self.produce([record])
        except http.Unavailable:
            # the reader still reaches the shop; the lost click is counted
            self.metrics.tracking.labels("click_lost", str(machine).lower()).inc()
        else:
            self.metrics.tracking.labels("click", str(machine).lower()).inc()
        return http.Outgoing(302, b"", "text/plain", {**NO_STORE, "Location": claims.url})

    async def unsubscribe_page(self, req: http.Incoming) -> http.Outgoing:
        claims = self._claims(req.params["token"], "unsubscribe", int(time.time() * 1000))
        if isinstance(claims, TokenError):
            return http.Outgoing(claims.status, pages.refused(str(claims)),
                                 "text/html; charset=utf-8", PAGE_HEADERS)
        shop = self.config.render.shop_name
        return http.Outgoing(200, pages.confirm(shop, claims.trigger, req.path),
                             "text/html; charset=utf-8", PAGE_HEADERS)

    async def unsubscribe(self, req: http.Incoming) -> http.Outgoing:
        now = int(time.time() * 1000)
        token = req.params["token"]
        claims = self._claims(token, "unsubscribe", now)
        if isinstance(claims, TokenError):
            return http.Outgoing(claims.status, pages.refused(str(claims)),
                                 "text/html; charset=utf-8", PAGE_HEADERS)
        if one_click(req.body, req.header("content-type") or ""):
            scope, source = "all", "one_click"
        else:
            try:
                chosen = parse_qs(req.body.decode("utf-8")).get("scope", ["all"])[0]
            except UnicodeDecodeError:
                chosen = "all"
            scope = claims.trigger if chosen == claims.trigger else "all"
            source = "page"
        record = track("Unsubscribed", claims.customer_id,
                       {"scope": scope, "email_key": claims.email_key, "source": source},
                       now, f"{token}:{scope}:{now // 60_000}")
        try:
            await self.produce([record])
        except http.Unavailable:
            return http.Outgoing(503, pages.refused("Please try again in a minute: we could "
                                                    "not record this just now."),
                                 "text/html; charset=utf-8", {**PAGE_HEADERS,
                                                              "Retry-After": "5"})
        self.metrics.tracking.labels(f"unsubscribe_{source}", "false").inc()
        return http.Outgoing(200, pages.done(self.config.render.shop_name, scope,
                                             claims.trigger),
                             "text/html; charset=utf-8", PAGE_HEADERS)
