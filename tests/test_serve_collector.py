"""The Segment-compatible collector of `nudge serve`, end to end: the real Segment and
RudderStack SDKs from PyPI -> the service on loopback -> the test broker -> `nudge run` ->
the decisions the journeys must make."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from tests.broker import Broker
from tests.servetools import ROOT, WRITE_KEY, running_service, serve_config

pytestmark = pytest.mark.broker

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)


def _sdk_clients(url: str) -> tuple[object, object]:
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    errors: list[object] = []
    segment = SegmentClient(WRITE_KEY, host=url, sync_mode=True, gzip=True,
                            on_error=lambda e, batch: errors.append(e), max_retries=3)
    rudder = RudderClient(WRITE_KEY, host=url, sync_mode=True, gzip=True,
                          on_error=lambda e, batch: errors.append(e), max_retries=3)
    return segment, rudder


def test_real_sdks_reach_the_flow_and_drive_its_decisions(broker: Broker,
                                                          tmp_path: Path) -> None:
    topic = broker.create_topic("serve-sdks", partitions=3)
    conf = serve_config(tmp_path, broker, topic)
    cart = {"product_id": "sku-1", "name": "Linen Shirt", "price": 49.0, "quantity": 1,
            "category": "apparel", "url": "https://shop.example/p/sku-1"}
    with running_service(conf) as (url, _proc):
        segment, rudder = _sdk_clients(url)
        # Segment: traits at the top; RudderStack: traits only under context.traits
        segment.identify("seg-1", {"email": "seg-1@example.com", "first_name": "Ann",
                                   "marketing_consent": True}, timestamp=T0)
        segment.track("seg-1", "Product Added", cart, timestamp=T0 + timedelta(minutes=1))
        rudder.identify("rud-1", {"email": "rud-1@example.com", "first_name": "Rud",
                                  "marketing_consent": True}, timestamp=T0)
        rudder.track("rud-1", "Product Added", cart, timestamp=T0 + timedelta(minutes=1))
        rudder.identify("rud-2", {"email": "rud-2@example.com", "marketing_consent": False},
                        timestamp=T0)
        rudder.track("rud-2", "Product Added", cart, timestamp=T0 + timedelta(minutes=1))
        rudder.page("rud-1", name="Home", timestamp=T0)  # valid, ignored by the flow
        # one bad message in a batch does not lose the good one beside it
        bad = httpx.post(f"{url}/v1/batch", auth=(WRITE_KEY, ""), json={"batch": [
            {"type": "track", "event": "Product Viewed", "userId": "x",
             "timestamp": "2026-10-05T10:00:00Z"},
            {"type": "track", "event": "Product Viewed", "userId": "late-1",
             "timestamp": (T0 + timedelta(hours=5)).isoformat(),
             "properties": {"product_id": "sku-2"}}]})
        assert bad.status_code == 200
        assert [(r["index"], r["reason"]) for r in bad.json()["rejected"]] == \
            [(0, "missing_field")]
        # a far later event from someone else moves event time past the stages
        segment.track("clock", "Product Viewed", {"product_id": "sku-9"},
                      timestamp=T0 + timedelta(days=3))

    records = broker.consume_all(topic)
    by_customer: dict[bytes | None, list[dict]] = {}
    for _part, _off, key, value, headers in records:
        doc = orjson.loads(value)
        assert dict(headers)["messageId"] == doc["messageId"].encode()
        by_customer.setdefault(key, []).append(doc)
    assert set(by_customer) == {b"seg-1", b"rud-1", b"rud-2", b"late-1", b"clock"}
    assert all(d["receivedAt"] for docs in by_customer.values() for d in docs)

    result = subprocess.run([sys.executable, "-m", "nudge", "run", "--config", str(conf),
                             "--bounded"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    decisions = [orjson.loads(line) for line in
                 (tmp_path / "decisions.jsonl").read_bytes().splitlines()]
    first = {(d["customer_id"], d["trigger"]): (d["outcome"], d["reason"]) for d in decisions
             if d["stage"] == 1}
    assert first[("seg-1", "cart_abandonment")][0] == "sent"
    assert first[("rud-1", "cart_abandonment")][0] == "sent"  # email from context.traits
    assert first[("rud-2", "cart_abandonment")] == ("suppressed", "no_consent")
    outbox = {p.read_bytes().split(b"\r\nTo: ", 1)[1].split(b"\r\n", 1)[0]
              for p in (tmp_path / "outbox").glob("*.eml")}
    assert {b"seg-1@example.com", b"rud-1@example.com"} <= outbox
    assert b"rud-2@example.com" not in outbox


def test_collector_refuses_what_it_cannot_store(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("serve-refusals", partitions=1)
    conf = serve_config(tmp_path, broker, topic)
    event = {"userId": "c1", "event": "Product Viewed", "timestamp": "2026-10-05T10:00:00Z",
             "properties": {"product_id": "p1"}}
    with running_service(conf) as (url, _proc):
        assert httpx.post(f"{url}/v1/track", json=event).status_code == 401
        assert httpx.post(f"{url}/v1/track", json=event, auth=("wrong", "")).status_code == 401
        ok = httpx.post(f"{url}/v1/track", json=event, auth=(WRITE_KEY, ""))
        assert (ok.status_code, ok.json()) == (200, {"success": True})
        in_body = httpx.post(f"{url}/v1/track", json={**event, "writeKey": WRITE_KEY})
        assert in_body.status_code == 200  # older SDKs send the key in the body
        body = gzip.compress(orjson.dumps({"batch": [{**event, "type": "track"}]}))
        ok = httpx.post(f"{url}/v1/b", content=body, auth=(WRITE_KEY, ""),
                        headers={"Content-Encoding": "gzip",
                                 "Content-Type": "application/json"})
        assert ok.status_code == 200, ok.text
        big = {**event, "properties": {"product_id": "p1", "name": "x" * 40_000}}
        too_big = httpx.post(f"{url}/v1/track", json=big, auth=(WRITE_KEY, ""))
        assert (too_big.status_code, too_big.json()["code"]) == (413, "payload_too_large")
        bomb = gzip.compress(b" " * 2_000_000)
        refused = httpx.post(f"{url}/v1/batch", content=bomb, auth=(WRITE_KEY, ""),
                             headers={"Content-Encoding": "gzip"})
        assert refused.status_code == 413
        wrong = httpx.post(f"{url}/v1/track", auth=(WRITE_KEY, ""),
                           json={**event, "event": "Product Teleported"})
        assert (wrong.status_code, wrong.json()["code"]) == (400, "unknown_event")
        metrics = httpx.get(f"{url}/metrics").text
        assert 'nudge_serve_messages_total{outcome="rejected",reason="unknown_event"} 1.0' \
            in metrics
    values = [orjson.loads(v) for *_, v, _ in broker.consume_all(topic)]
    assert len(values) == 3 and all(v["userId"] == "c1" for v in values)
    assert not any("writeKey" in v for v in values)


def test_sigterm_under_load_loses_nothing_answered(broker: Broker, tmp_path: Path) -> None:
    """Requests keep coming while the service is told to stop (two workers): every request
    answered 200 has its events on the topic, and the process exits cleanly."""
    import threading

    topic = broker.create_topic("serve-shutdown", partitions=2)
    conf = serve_config(tmp_path, broker, topic)
    answered: list[str] = []
    started = threading.Event()
    stop = threading.Event()

    def client(url: str, n: int) -> None:
        with httpx.Client(auth=(WRITE_KEY, ""), timeout=30) as c:
            for i in range(10_000):
                if stop.is_set():
                    return
                mid = f"{n}-{i}"
                doc = {"type": "track", "event": "Product Viewed", "userId": f"c{i % 7}",
                       "messageId": mid, "timestamp": "2026-10-05T10:00:00Z",
                       "properties": {"product_id": "p1"}}
                try:
                    r = c.post(f"{url}/v1/batch", json={"batch": [doc]})
                except httpx.HTTPError:
                    return  # the server went away: what it did not answer is not counted
                if r.status_code == 200:
                    answered.append(mid)
                    if len(answered) >= 20:
                        started.set()

    with running_service(conf, workers=2) as (url, proc):
        threads = [threading.Thread(target=client, args=(url, n)) for n in range(4)]
        for t in threads:
            t.start()
        assert started.wait(60)
        proc.terminate()  # SIGTERM while requests are in flight
        assert proc.wait(60) == 0
        stop.set()
        for t in threads:
            t.join(60)
    stored = {orjson.loads(v)["messageId"] for *_, v, _ in broker.consume_all(topic)}
    assert set(answered) <= stored
