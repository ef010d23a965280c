"""ESP webhooks through `nudge serve` onto the topic: SendGrid's ECDSA signature, Postmark's
Basic auth, Mailgun's HMAC; a tampered body or a wrong secret changes nothing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nudge.serve.engagement import from_key
from nudge.serve.webhooks import Mapper, sendgrid_events
from tests.broker import Broker
from tests.servetools import running_service, serve_config

KEY = "cust-7\x1fcart_abandonment\x1f1\x1f2"  # customer, journey, episode, stage


def test_sendgrid_events_map_to_the_agreed_shapes() -> None:
    m = Mapper("sendgrid", lambda agent: "googleimageproxy" in agent.lower())
    events = [
        {"event": "delivered", "nudge_key": KEY, "timestamp": 1790000000, "sg_event_id": "a"},
        {"event": "open", "nudge_key": KEY, "timestamp": 1790000001, "sg_event_id": "b",
         "useragent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"},
        {"event": "click", "nudge_key": KEY, "timestamp": 1790000002, "sg_event_id": "c",
         "url": "https://shop.example/p/1", "useragent": "Mozilla/5.0"},
        {"event": "bounce", "type": "bounce", "nudge_key": KEY, "email": "a@example.com",
         "reason": "550 no such user", "timestamp": 1790000003, "sg_event_id": "d"},
        {"event": "bounce", "type": "blocked", "nudge_key": KEY, "email": "a@example.com",
         "timestamp": 1790000004, "sg_event_id": "e"},
        {"event": "spamreport", "nudge_key": KEY, "email": "a@example.com",
         "timestamp": 1790000005, "sg_event_id": "f"},
        {"event": "unsubscribe", "nudge_key": KEY, "timestamp": 1790000006, "sg_event_id": "g"},
        {"event": "processed", "nudge_key": KEY, "timestamp": 1790000000},
        {"event": "delivered", "timestamp": 1790000000},  # not an email Nudge sent
    ]
    records, skipped = sendgrid_events(events, m)
    assert skipped == 2
    docs = [orjson.loads(r.value) for r in records]
    assert {r.key for r in records} == {b"cust-7"}
    assert all(d["userId"] == "cust-7" and d["type"] == "track" for d in docs)
    base = {"email_key": KEY, "trigger": "cart_abandonment", "stage": 2}
    assert [(d["event"], d["properties"]) for d in docs] == [
        ("Email Delivered", {**base, "provider": "sendgrid"}),
        ("Email Opened", {**base, "variant": None, "machine": True}),
        ("Email Link Clicked", {**base, "variant": None, "url": "https://shop.example/p/1",
                                "machine": False}),
        ("Email Bounced", {"bounce_type": "hard", "email": "a@example.com", **base,
                           "provider": "sendgrid", "reason": "550 no such user"}),
        ("Email Bounced", {"bounce_type": "soft", "email": "a@example.com", **base,
                           "provider": "sendgrid", "reason": ""}),
        ("Email Marked as Spam", {"email": "a@example.com", **base, "provider": "sendgrid"}),
        ("Unsubscribed", {"scope": "all", "email_key": KEY, "source": "webhook"}),
    ]
    again, _ = sendgrid_events(events, m)  # the ESP's retry: the same messageIds
    assert [r.message_id for r in again] == [r.message_id for r in records]
    assert from_key("no-separators") is None


@pytest.mark.broker
def test_webhooks_verify_their_signatures_and_produce_events(broker: Broker,
                                                             tmp_path: Path) -> None:
    topic = broker.create_topic("serve-webhooks", partitions=2)
    private = ec.generate_private_key(ec.SECP256R1())
    public_b64 = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    env = {"NUDGE_SENDGRID_WEBHOOK_KEY": public_b64, "NUDGE_POSTMARK_WEBHOOK_USER": "pm",
           "NUDGE_POSTMARK_WEBHOOK_PASSWORD": "pm-secret",
           "NUDGE_MAILGUN_SIGNING_KEY": "mg-signing-key"}
    conf = serve_config(tmp_path, broker, topic)
    with running_service(conf, env=env) as (url, _proc):
        body = orjson.dumps([{"event": "bounce", "type": "bounce", "nudge_key": KEY,
                              "email": "a@example.com", "timestamp": 1790000003,
                              "sg_event_id": "sg-1", "reason": "550"}])
        ts = str(int(time.time()))

        def signed(payload: bytes) -> dict[str, str]:
            sig = private.sign(ts.encode() + payload, ec.ECDSA(hashes.SHA256()))
            return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                    "X-Twilio-Email-Event-Webhook-Timestamp": ts}

        headers = signed(body)
        tampered = body.replace(b'"bounce","type"', b'"spamreport","type"')
        assert tampered != body
        refused = httpx.post(f"{url}/webhooks/sendgrid", content=tampered, headers=headers)
        assert refused.status_code == 403
        assert httpx.post(f"{url}/webhooks/sendgrid", content=body).status_code == 401
        ok = httpx.post(f"{url}/webhooks/sendgrid", content=body, headers=headers)
        assert (ok.status_code, ok.json()["events"]) == (200, 1)

        click = {"RecordType": "Click", "MessageID": "pm-1", "Metadata": {"nudge_key": KEY},
                 "OriginalLink": "https://shop.example/p/2", "UserAgent": "Mozilla/5.0",
                 "ReceivedAt": "2026-10-05T10:00:01.1234567Z"}
        assert httpx.post(f"{url}/webhooks/postmark", json=click,
                          auth=("pm", "wrong")).status_code == 401
        assert httpx.post(f"{url}/webhooks/postmark", json=click,
                          auth=("pm", "pm-secret")).status_code == 200

        stamp, token = str(int(time.time())), "tok-1"
        mac = hmac.new(b"mg-signing-key", (stamp + token).encode(), hashlib.sha256).hexdigest()
        complained = {"signature": {"timestamp": stamp, "token": token, "signature": mac},
                      "event-data": {"event": "complained", "recipient": "a@example.com",
                                     "timestamp": 1790000009.5, "id": "mg-1",
                                     "user-variables": {"nudge_key": KEY}}}
        forged = {**complained, "signature": {**complained["signature"],
                                              "signature": "0" * 64}}
        assert httpx.post(f"{url}/webhooks/mailgun", json=forged).status_code == 403
        assert httpx.post(f"{url}/webhooks/mailgun", json=complained).status_code == 200
        replay = {**complained, "event-data": {**complained["event-data"],
                                               "event": "unsubscribed"}}
        assert httpx.post(f"{url}/webhooks/mailgun", json=replay).status_code == 403

    docs = [orjson.loads(v) for *_, v, _ in broker.consume_all(topic)]
    assert sorted((d["event"], d["userId"]) for d in docs) == [
        ("Email Bounced", "cust-7"), ("Email Link Clicked", "cust-7"),
        ("Email Marked as Spam", "cust-7")]
    click_doc = next(d for d in docs if d["event"] == "Email Link Clicked")
    assert click_doc["timestamp"] == "2026-10-05T10:00:01.123Z"
    assert click_doc["properties"]["url"] == "https://shop.example/p/2"


def test_the_flow_takes_webhook_events_without_dead_letters() -> None:
    """What the webhooks produce parses in the flow; Email Delivered is an event of its own
    kind and changes no decision."""
    from nudge.core.events import Kind
    from tests.events import add, identify, view
    from tests.harness import Pipeline

    m = Mapper("sendgrid", lambda agent: False)
    key = "u1\x1fcart_abandonment\x1f1\x1f1"
    delivered, _ = sendgrid_events([{"event": "delivered", "nudge_key": key,
                                     "timestamp": 1791194500, "sg_event_id": "x"}], m)
    base = [identify("u1", 0), add("u1", 1)]
    with_hook, without = Pipeline(), Pipeline()
    later = view("z", 3 * 24 * 60)  # moves event time past the stages
    with_hook.feed([*base, delivered[0].value, later])
    without.feed([*base, later])
    with_hook.end()
    without.end()
    assert with_hook.dead == [] and with_hook.decisions == without.decisions
    assert with_hook.decisions
    from nudge.core.config import EventsConfig
    from nudge.flows.contract import Limits, parse_record

    ev = parse_record(delivered[0].value, Limits.from_config(EventsConfig(), now_ms=2 * 10**12))
    assert ev.kind == Kind.EMAIL_DELIVERED
