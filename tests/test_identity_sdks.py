"""The payloads the real Segment and RudderStack Python SDKs send, recorded against a
loopback HTTP server: an anonymous cart, then login, then abandonment gives one email, to
the identified address, with the merged cart; through the pure pipeline and the dataflow.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from bytewax.testing import TestingSink, run_main

from nudge.core.config import Config
from nudge.core.records import Decision
from nudge.flows.dataflow import build_flow
from nudge.sources.files import JsonlSource
from tests.harness import Pipeline

T0 = datetime(2026, 10, 5, 10, 0, tzinfo=UTC)
CART = {"product_id": "sku-1", "name": "Linen Shirt", "price": 49.0, "quantity": 2,
        "category": "apparel", "url": "https://shop.example/p/sku-1",
        "image_url": "https://shop.example/img/sku-1.jpg"}


class Recorder(BaseHTTPRequestHandler):
    """Accepts the SDKs' batch uploads (gzip or not) and keeps every message."""

    messages: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        Recorder.messages.extend(orjson.loads(body)["batch"])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"success": true}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.messages = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def segment_client(url: str):  # type: ignore[no-untyped-def]
    from segment.analytics.client import Client

    return Client("write-key", host=url, sync_mode=True, gzip=True, max_retries=1)


def rudder_client(url: str):  # type: ignore[no-untyped-def]
    from rudderstack.analytics.client import Client

    return Client("write-key", host=url, sync_mode=True, gzip=True, max_retries=1)


def shop(client, *, alias: bool) -> None:  # type: ignore[no-untyped-def]
    """A browser session as a shop's backend reports it through the SDK: logged out, two
    views and two adds; then login (an identify with both ids, or identify + alias)."""
    anon = "7c0d2f7e-browser"
    client.track(anonymous_id=anon, event="Product Viewed", properties=CART, timestamp=T0)
    client.page(anonymous_id=anon, name="Shirt", properties={"path": "/p/sku-1"},
                timestamp=T0 + timedelta(seconds=20))
    client.track(anonymous_id=anon, event="Product Added", properties=CART,
                 timestamp=T0 + timedelta(minutes=1))
    client.track(anonymous_id=anon, event="Product Added",
                 properties={**CART, "product_id": "sku-2", "quantity": 1},
                 timestamp=T0 + timedelta(minutes=2))
    traits = {"email": "ann@example.com", "first_name": "Ann", "marketing_consent": True}
    if alias:
        client.identify(user_id="user-42", traits=traits, timestamp=T0 + timedelta(minutes=5))
        client.alias(previous_id=anon, user_id="user-42", timestamp=T0 + timedelta(minutes=5))
    else:
        client.identify(user_id="user-42", anonymous_id=anon, traits=traits,
                        timestamp=T0 + timedelta(minutes=5))
    client.group(user_id="user-42", group_id="acme", timestamp=T0 + timedelta(minutes=6))
    # someone else keeps the stream's event time moving past the abandonment stage
    client.track(user_id="other", event="Product Viewed", properties=CART,
                 timestamp=T0 + timedelta(hours=5))
    client.flush()


def check(decisions: list[Decision]) -> None:
    sent = [d for d in decisions if d.outcome == "sent"]
    assert [(d.customer_id, d.trigger) for d in sent] == [("user-42", "cart_abandonment")]
    ctx = sent[0].context
    assert ctx is not None and ctx.email == "ann@example.com" and ctx.first_name == "Ann"
    assert sorted((line.product_id, line.quantity) for line in ctx.cart) == [
        ("sku-1", 2), ("sku-2", 1)]
    # due an hour after the last cart activity, which was anonymous
    assert sent[0].due == int((T0 + timedelta(minutes=62)).timestamp() * 1000)


@pytest.mark.parametrize("sdk", ["segment", "rudderstack"])
@pytest.mark.parametrize("alias", [False, True], ids=["identify-both-ids", "alias"])
def test_anonymous_cart_login_abandonment_one_email_to_the_identified_address(
        recorder: str, sdk: str, alias: bool, tmp_path: Path) -> None:
    shop((segment_client if sdk == "segment" else rudder_client)(recorder), alias=alias)
    lines = [orjson.dumps(m) for m in Recorder.messages]
    assert len(lines) == (8 if alias else 7)
    if sdk == "rudderstack":  # its identify traits travel under context.traits
        ident = next(m for m in Recorder.messages if m["type"] == "identify")
        assert ident["context"]["traits"]["email"] == "ann@example.com"

    p = Pipeline(Config(shards=4))
    p.feed(lines)
    p.end()
    assert p.dead == []
    check(p.decisions)

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    out: list[Decision] = []
    dead: list[object] = []
    run_main(build_flow(Config(shards=4), source=JsonlSource([path], 3), sink=TestingSink(out),
                        dead_letter_sink=TestingSink(dead),
                        email_sink=TestingSink([])))
    assert dead == []
    check(out)
