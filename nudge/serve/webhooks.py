"""ESP webhooks -> the engagement and consent events of nudge/serve/engagement.py.

- SendGrid Event Webhook `POST /webhooks/sendgrid`: a JSON array of events; the ECDSA
  signature (headers X-Twilio-Email-Event-Webhook-Signature and -Timestamp) is checked over
  the timestamp and the raw body, and the timestamp must be recent (`webhooks.max_age`).
- Postmark `POST /webhooks/postmark`: one JSON record a request (RecordType Delivery, Bounce,
  SpamComplaint, Open, Click, SubscriptionChange); Basic auth in the webhook's URL.
- Mailgun `POST /webhooks/mailgun`: `{"signature": {timestamp, token, signature},
  "event-data": {...}}`; HMAC-SHA256 of timestamp + token under the signing key. Mailgun's
  signature does not cover the body, so each token is accepted once.

Each provider's webhook answers 404 until its secret is configured, 401/403 for a missing or
wrong signature (nothing is produced), 503 if the broker did not acknowledge (the ESP
retries), and 200 once every event is on the topic. An event that carries no Nudge email key
(an email some other system sent) is counted and skipped.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from base64 import b64decode
from binascii import Error as B64Error
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from nudge.core.config import Config
from nudge.serve import http
from nudge.serve.collector import Record
from nudge.serve.engagement import from_key, track
from nudge.serve.metrics import Metrics
from nudge.serve.signatures import EcdsaKey, mailgun_valid

Produce = Callable[[Sequence[Record]], Awaitable[None]]
Event = tuple[str, dict[str, Any], str]  # (name, properties, identity)

POSTMARK_HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated",
                           "SpamNotification", "Blocked"})
_FRACTION = re.compile(r"(\.\d{6})\d+")


def iso_ms(text: Any, default: int) -> int:
    """Postmark's times carry 7 fractional digits, which datetime does not read."""
    if not isinstance(text, str):
        return default
    try:
        return round(datetime.fromisoformat(_FRACTION.sub(r"\1", text)).timestamp() * 1000)
    except ValueError:
        return default


class Mapper:
    """Turns one provider event into a track event of its email's customer."""

    def __init__(self, provider: str, machine: Callable[[str], bool]) -> None:
        self.provider = provider
        self.machine = machine

    def base(self, key: Any) -> tuple[str, dict[str, Any]] | None:
        parsed = from_key(key) if isinstance(key, str) else None
        if parsed is None:
            return None
        customer, trigger, stage = parsed
        return customer, {"email_key": key, "trigger": trigger, "stage": stage}

    def delivered(self, b: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "Email Delivered", {**b, "provider": self.provider}

    def opened(self, b: dict[str, Any], agent: str, machine: bool = False
               ) -> tuple[str, dict[str, Any]]:
        return "Email Opened", {**b, "variant": None,
                                "machine": machine or self.machine(agent)}

    def clicked(self, b: dict[str, Any], url: Any, agent: str) -> tuple[str, dict[str, Any]]:
        return "Email Link Clicked", {**b, "variant": None, "url": str(url or ""),
                                      "machine": self.machine(agent)}

    def bounced(self, b: dict[str, Any], hard: bool, email: Any, reason: Any
                ) -> tuple[str, dict[str, Any]]:
        return "Email Bounced", {"bounce_type": "hard" if hard else "soft",
                                 "email": str(email or ""), **b, "provider": self.provider,
                                 "reason": str(reason or "")[:500]}

    def spam(self, b: dict[str, Any], email: Any) -> tuple[str, dict[str, Any]]:
        return "Email Marked as Spam", {"email": str(email or ""), **b,
                                        "provider": self.provider}

    def unsubscribed(self, b: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return "Unsubscribed", {"scope": "all", "email_key": b["email_key"],
                                "source": "webhook"}


def sendgrid_events(events: list[Any], m: Mapper) -> tuple[list[Record], int]:
    out: list[Record] = []
    skipped = 0
    for ev in events:
        if not isinstance(ev, dict) or (found := m.base(ev.get("nudge_key"))) is None:
            skipped += 1
            continue
        customer, b = found
        kind = ev.get("event")
        agent = str(ev.get("useragent") or "")
        if kind == "delivered":
            named = m.delivered(b)
        elif kind == "open":
            named = m.opened(b, agent, bool(ev.get("sg_machine_open")))
        elif kind == "click":
            named = m.clicked(b, ev.get("url"), agent)
        elif kind == "bounce":  # type "bounce": the address does not exist; "blocked": soft
            named = m.bounced(b, ev.get("type", "bounce") == "bounce", ev.get("email"),
                              ev.get("reason"))
        elif kind == "spamreport":
            named = m.spam(b, ev.get("email"))
        elif kind in ("unsubscribe", "group_unsubscribe"):
            named = m.unsubscribed(b)
        else:  # processed, deferred, dropped, group_resubscribe: nothing the flow reads
            skipped += 1
            continue
        at = int(ev.get("timestamp") or 0) * 1000 or int(time.time() * 1000)
        ident = str(ev.get("sg_event_id") or orjson.dumps(ev, option=orjson.OPT_SORT_KEYS))
        out.append(track(named[0], customer, named[1], at, f"sendgrid:{ident}"))
    return out, skipped


def postmark_event(rec: dict[str, Any], m: Mapper, now: int) -> Record | None:
    meta = rec.get("Metadata")
    found = m.base(meta.get("nudge_key")) if isinstance(meta, dict) else None
    if found is None:
        return None
    customer, b = found
    kind = rec.get("RecordType")
    agent = str(rec.get("UserAgent") or "")
    if kind == "Delivery":
        named, at = m.delivered(b), rec.get("DeliveredAt")
    elif kind == "Bounce":
        named = m.bounced(b, rec.get("Type") in POSTMARK_HARD, rec.get("Email"),
                          rec.get("Description"))
        at = rec.get("BouncedAt")
    elif kind == "SpamComplaint":
        named, at = m.spam(b, rec.get("Email")), rec.get("BouncedAt")
    elif kind == "Open":
        named, at = m.opened(b, agent), rec.get("ReceivedAt")
    elif kind == "Click":
        named, at = m.clicked(b, rec.get("OriginalLink"), agent), rec.get("ReceivedAt")
    elif kind == "SubscriptionChange" and rec.get("SuppressSending") is True:
        named, at = m.unsubscribed(b), rec.get("ChangedAt")
    else:
        return None
    ident = f"postmark:{kind}:{rec.get('MessageID')}:{at}:{rec.get('OriginalLink', '')}"
    return track(named[0], customer, named[1], iso_ms(at, now), ident)


def mailgun_event(data: dict[str, Any], m: Mapper, now: int) -> Record | None:
    found = m.base((data.get("user-variables") or {}).get("nudge_key"))
    if found is None:
        return None
    customer, b = found
    kind = data.get("event")
    agent = str((data.get("client-info") or {}).get("user-agent") or "")
    status = data.get("delivery-status") or {}
    if kind == "delivered":
        named = m.delivered(b)
    elif kind == "opened":
        named = m.opened(b, agent)
    elif kind == "clicked":
        named = m.clicked(b, data.get("url"), agent)
    elif kind == "failed":
        named = m.bounced(b, data.get("severity") == "permanent", data.get("recipient"),
                          status.get("description") or status.get("message")
                          or data.get("reason"))
    elif kind == "complained":
        named = m.spam(b, data.get("recipient"))
    elif kind == "unsubscribed":
        named = m.unsubscribed(b)
    else:
        return None
    ts = data.get("timestamp")
    at = round(float(ts) * 1000) if isinstance(ts, (int, float)) else now
    return track(named[0], customer, named[1], at, f"mailgun:{data.get('id') or ts}:{kind}")


class Webhooks:
    def __init__(self, config: Config, metrics: Metrics, produce: Produce,
                 machine: Callable[[str], bool]) -> None:
        w = config.webhooks
        self.metrics = metrics
        self.produce = produce
        self.max_age = w.max_age / 1000
        sg = os.environ.get(w.sendgrid_public_key_env, "")
        self.sendgrid_key = EcdsaKey(sg, w.sendgrid_public_key_env) if sg.strip() else None
        self.postmark = (os.environ.get(w.postmark_user_env, ""),
                         os.environ.get(w.postmark_password_env, ""))
        self.mailgun_key = os.environ.get(w.mailgun_signing_key_env, "")
        # Mailgun signs the timestamp and a token, not the body: a token is taken once, so a
        # captured signature cannot carry a second, altered body (within this process)
        self.mailgun_tokens: OrderedDict[str, None] = OrderedDict()
        self.mappers = {p: Mapper(p, machine) for p in ("sendgrid", "postmark", "mailgun")}

    def _fresh(self, timestamp: str | None) -> bool:
        try:
            return abs(time.time() - float(timestamp or "x")) <= self.max_age
        except ValueError:
            return False

    async def _finish(self, provider: str, records: list[Record], skipped: int
                      ) -> http.Outgoing:
        if records:
            try:
                await self.produce(records)
            except http.Unavailable as exc:
                return http.error(503, "unavailable", f"not stored, retry: {exc}")
        for r in records:
            self.metrics.webhooks.labels(provider, orjson.loads(r.value)["event"]).inc()
        if skipped:
            self.metrics.webhooks.labels(provider, "skipped").inc(skipped)
        return http.json(200, {"success": True, "events": len(records)})

    def _refuse(self, provider: str, status: int, message: str) -> http.Outgoing:
        self.metrics.webhooks.labels(provider, "refused").inc()
        return http.error(status, "unauthorized" if status == 401 else "forbidden", message)

    async def sendgrid(self, req: http.Incoming) -> http.Outgoing:
        if self.sendgrid_key is None:
            return http.error(404, "not_configured", "the SendGrid webhook key is not set")
        sig = req.header("x-twilio-email-event-webhook-signature")
        ts = req.header("x-twilio-email-event-webhook-timestamp")
        if not sig or not ts:
            return self._refuse("sendgrid", 401, "signature headers missing")
        if not self.sendgrid_key.valid(sig, ts.encode() + req.body):
            return self._refuse("sendgrid", 403, "signature does not match the body")
        if not self._fresh(ts):
            return self._refuse("sendgrid", 403, "timestamp too old (a replay?)")
        try:
            events = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return http.error(400, "invalid_json", "the body is not valid JSON")
        if not isinstance(events, list):
            return http.error(400, "not_a_list", "SendGrid posts a JSON array of events")
        records, skipped = sendgrid_events(events, self.mappers["sendgrid"])
        return await self._finish("sendgrid", records, skipped)

    async def postmark_hook(self, req: http.Incoming) -> http.Outgoing:
        user, password = self.postmark
        if not user or not password:
            return http.error(404, "not_configured", "the Postmark webhook user is not set")
        given = req.header("authorization") or ""
        try:
            got_user, _, got_pw = b64decode(given[6:]).decode().partition(":") \
                if given[:6].lower() == "basic " else ("", "", "")
        except (B64Error, UnicodeDecodeError, ValueError):
            got_user, got_pw = "", ""
        ok_user = hmac.compare_digest(got_user.encode(), user.encode())
        if not (ok_user & hmac.compare_digest(got_pw.encode(), password.encode())):
            return self._refuse("postmark", 401, "wrong or missing Basic auth")
        try:
            rec = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return http.error(400, "invalid_json", "the body is not valid JSON")
        if not isinstance(rec, dict):
            return http.error(400, "not_an_object", "Postmark posts one JSON object")
        record = postmark_event(rec, self.mappers["postmark"], int(time.time() * 1000))
        return await self._finish("postmark", [record] if record else [], 0 if record else 1)

    async def mailgun(self, req: http.Incoming) -> http.Outgoing:
        if not self.mailgun_key:
            return http.error(404, "not_configured", "the Mailgun signing key is not set")
        try:
            doc = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return http.error(400, "invalid_json", "the body is not valid JSON")
        sig = doc.get("signature") if isinstance(doc, dict) else None
        if not isinstance(sig, dict) or not all(isinstance(sig.get(k), str)
                                                for k in ("timestamp", "token", "signature")):
            return self._refuse("mailgun", 401, "signature missing")
        if not mailgun_valid(self.mailgun_key, sig["timestamp"], sig["token"],
                             sig["signature"]):
            return self._refuse("mailgun", 403, "signature does not match")
        if not self._fresh(sig["timestamp"]):
            return self._refuse("mailgun", 403, "timestamp too old (a replay?)")
        if sig["token"] in self.mailgun_tokens:
            return self._refuse("mailgun", 403, "token already used (a replay?)")
        self.mailgun_tokens[sig["token"]] = None
        if len(self.mailgun_tokens) > 100_000:
            self.mailgun_tokens.popitem(last=False)
        data = doc.get("event-data")
        if not isinstance(data, dict):
            return http.error(400, "missing_field", "event-data is required")
        record = mailgun_event(data, self.mappers["mailgun"], int(time.time() * 1000))
        return await self._finish("mailgun", [record] if record else [], 0 if record else 1)
