"""The pure parts of `nudge serve`, without a server or a broker: the collector's rules, write
keys, gzip limits, RFC 8058 bodies, scanner detection and the Postmark and Mailgun mappings."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from nudge.core.config import EventsConfig
from nudge.serve.collector import Collector, RequestError, authorized, write_key
from nudge.serve.service import gunzip, is_machine
from nudge.serve.tracking import one_click
from nudge.serve.webhooks import Mapper, iso_ms, mailgun_event, postmark_event

NOW = 1_800_000_000_000
KEY = "c9\x1fwin_back\x1f2\x1f1"


def test_collector_fills_ids_and_times_and_keeps_good_messages() -> None:
    c = Collector(EventsConfig(), max_message=32 * 1024)
    msg = {"event": "Product Viewed", "userId": 42, "timestamp": "2026-10-05T10:00:00Z",
           "properties": {"product_id": "p1"}, "writeKey": "secret"}
    first = c.collect("track", msg, now_ms=NOW)
    again = c.collect("track", msg, now_ms=NOW + 5000)  # an SDK's retry
    [r] = first.records
    doc = orjson.loads(r.value)
    assert r.key == b"42" and doc["type"] == "track" and "writeKey" not in doc
    assert r.message_id == again.records[0].message_id  # the same digest: de-duplicated
    assert doc["receivedAt"] == "2027-01-15T08:00:00Z"
    no_time = c.collect("identify", {"userId": "u", "traits": {}}, now_ms=NOW).records[0]
    assert orjson.loads(no_time.value)["timestamp"] == "2027-01-15T08:00:00Z"
    page = c.collect("page", {"anonymousId": "a1", "name": "Home"}, now_ms=NOW)
    assert (len(page.records), page.ignored) == (1, 0)  # stored, and engagement for the flow
    group = c.collect("group", {"anonymousId": "a1", "groupId": "g"}, now_ms=NOW)
    assert (len(group.records), group.ignored) == (1, 1)  # stored, and ignored by the flow
    batch = c.collect("batch", {"context": {"library": {"name": "x"}}, "batch": [
        {"type": "track", "event": "Product Viewed", "userId": "u",
         "timestamp": "2026-10-05T10:00:00Z", "properties": {"product_id": "p"}},
        {"type": "track", "event": "Nope", "userId": "u", "timestamp": "2026-10-05T10:00:00Z"},
        "not an object",
        {"type": "track", "event": "Product Viewed", "userId": "u", "timestamp": "soon",
         "properties": {"product_id": "p"}},
        {"type": "identify", "userId": "u", "timestamp": "2026-10-05T10:00:00Z",
         "properties": {"name": "x" * 40_000}}]}, now_ms=NOW)
    assert [(r.index, r.reason) for r in batch.rejected] == [
        (1, "unknown_event"), (2, "not_an_object"), (3, "bad_timestamp"),
        (4, "payload_too_large")]
    assert orjson.loads(batch.records[0].value)["context"] == {"library": {"name": "x"}}
    with pytest.raises(RequestError, match="batch"):
        c.collect("batch", {"messages": []}, now_ms=NOW)


def test_write_keys() -> None:
    basic = "Basic " + base64.b64encode(b"wk1:").decode()
    assert write_key(basic, {}) == "wk1"
    assert write_key(None, {"writeKey": "wk2"}) == "wk2"
    assert write_key("Basic !!!", {"writeKey": "wk2"}) is None  # a bad header is not skipped
    assert authorized("wk2", ("wk1", "wk2")) and not authorized("wk3", ("wk1", "wk2"))
    assert not authorized(None, ("wk1",)) and not authorized("", ("",))


def test_gzip_bodies_are_capped_unpacked() -> None:
    assert gunzip(gzip.compress(b"{}"), 10) == b"{}"
    with pytest.raises(RequestError) as bomb:
        gunzip(gzip.compress(b"0" * 1_000_000), 500 * 1024)
    assert bomb.value.status == 413
    with pytest.raises(RequestError) as bad:
        gunzip(b"not gzip", 100)
    assert bad.value.code == "invalid_gzip"


def test_one_click_bodies_and_machines() -> None:
    assert one_click(b"List-Unsubscribe=One-Click", "application/x-www-form-urlencoded")
    multipart = (b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
                 b"One-Click\r\n--b--\r\n")
    assert one_click(multipart, "multipart/form-data; boundary=b")
    assert not one_click(b"scope=all", "application/x-www-form-urlencoded")
    agents = ("googleimageproxy", "bot")
    assert is_machine("Mozilla/5.0 (via ggpht.com GoogleImageProxy)", agents)
    assert is_machine("", agents)  # no agent at all
    assert not is_machine("Mozilla/5.0 (Macintosh) Safari/605.1.15", agents)


def test_postmark_and_mailgun_events_map_to_the_agreed_shapes() -> None:
    m = Mapper("postmark", lambda agent: "bot" in agent)
    bounce = postmark_event({"RecordType": "Bounce", "Type": "HardBounce", "MessageID": "x",
                             "Email": "a@example.com", "Description": "gone",
                             "BouncedAt": "2026-10-05T10:00:00.1234567-04:00",
                             "Metadata": {"nudge_key": KEY}}, m, NOW)
    assert bounce is not None
    doc = orjson.loads(bounce.value)
    assert (doc["event"], doc["userId"], doc["timestamp"]) == \
        ("Email Bounced", "c9", "2026-10-05T14:00:00.123Z")
    assert doc["properties"] == {"bounce_type": "hard", "email": "a@example.com",
                                 "email_key": KEY, "trigger": "win_back", "stage": 1,
                                 "provider": "postmark", "reason": "gone"}
    soft = postmark_event({"RecordType": "Bounce", "Type": "SoftBounce",
                           "Metadata": {"nudge_key": KEY}}, m, NOW)
    assert soft is not None and orjson.loads(soft.value)["properties"]["bounce_type"] == "soft"
    assert postmark_event({"RecordType": "Delivery", "Metadata": {}}, m, NOW) is None
    unsub = postmark_event({"RecordType": "SubscriptionChange", "SuppressSending": True,
                            "Metadata": {"nudge_key": KEY}}, m, NOW)
    assert unsub is not None and orjson.loads(unsub.value)["properties"] == \
        {"scope": "all", "email_key": KEY, "source": "webhook"}
    g = Mapper("mailgun", lambda agent: False)
    failed = mailgun_event({"event": "failed", "severity": "temporary", "recipient": "a@ex.com",
                            "timestamp": 1790000000.25, "id": "e1",
                            "delivery-status": {"description": "mailbox full"},
                            "user-variables": {"nudge_key": KEY}}, g, NOW)
    assert failed is not None
    props = orjson.loads(failed.value)["properties"]
    assert (props["bounce_type"], props["reason"], props["provider"]) == \
        ("soft", "mailbox full", "mailgun")
    assert iso_ms("garbage", 7) == 7
