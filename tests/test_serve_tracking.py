"""Tracking and unsubscribe through `nudge serve`, end to end: an email sent by the flow
with tracked links, a click on one (redirected only to the URL signed into its token), an
RFC 8058 one-click unsubscribe, and the next stage of the journey suppressed (`no_consent`).
Forged tokens and open-redirect attempts are refused and change nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
import orjson
import pytest

from nudge.core.keyring import Keyring
from nudge.core.timefmt import to_iso
from nudge.core.tokens import Claims, sign
from tests.broker import Broker
from tests.servetools import ROOT, running_service, serve_config

pytestmark = pytest.mark.broker

SECRET = "tracking-test-signing-key-0123456789abcdef"
ENV = {"NUDGE_TEST_SIGNING_KEY": SECRET}
BASE = "https://t.shop.example"


def _event(doc: dict) -> tuple[bytes, bytes]:
    return doc["userId"].encode(), orjson.dumps(doc)


def _run(conf: Path) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "nudge", "run", "--config", str(conf),
                             "--bounded"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT), **ENV},
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = Path(conf.read_text().split('decisions = "')[1].split('"')[0])
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_click_then_one_click_unsubscribe_suppresses_the_next_stage(
        broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("serve-tracking", partitions=2)
    now = int(time.time() * 1000)
    start = now - 2 * 3600_000
    broker.produce(topic, [
        _event({"type": "identify", "userId": "u1", "messageId": "i1",
                "timestamp": to_iso(start),
                "traits": {"email": "u1@example.com", "marketing_consent": True}}),
        _event({"type": "track", "event": "Product Added", "userId": "u1", "messageId": "a1",
                "timestamp": to_iso(start + 60_000),
                "properties": {"product_id": "sku-1", "name": "Linen Shirt", "price": 49.0,
                               "url": "https://shop.example/p/sku-1"}}),
        _event({"type": "track", "event": "Product Viewed", "userId": "z", "messageId": "z1",
                "timestamp": to_iso(now - 1800_000), "properties": {"product_id": "sku-9"}}),
    ])
    sections = {"secrets": {"signing_key": "k1"},
                "secrets.keys.k1": {"env": "NUDGE_TEST_SIGNING_KEY"},
                "tracking": {"enabled": True, "base_url": BASE},
                "render": {"unsubscribe_url": BASE + "/u/{token}"},
                "triggers.cart_abandonment": {"stages": ["1h", "24h"]}}
    conf = serve_config(tmp_path, broker, topic, **sections)
    first = _run(conf)
    assert [(d["customer_id"], d["stage"], d["outcome"]) for d in first] == [("u1", 1, "sent")]
    [eml] = list((tmp_path / "outbox").glob("*.eml"))
    msg = BytesParser(policy=policy.default).parse(eml.open("rb"))
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    clicks = re.findall(r'href="(https://t\.shop\.example/c/[^"]+)"', html)
    pixels = re.findall(r'src="(https://t\.shop\.example/o/[^"]+)"', html)
    unsubscribe = re.search(r"<(https://t\.shop\.example/u/[^>]+)>",
                            msg["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert clicks and len(pixels) == 1

    with running_service(conf, env=ENV) as (url, _proc):
        local = {u: u.replace(BASE, url) for u in [*clicks, *pixels, unsubscribe]}
        client = httpx.Client(follow_redirects=False)
        click = client.get(local[clicks[-1]], headers={"User-Agent": "Mozilla/5.0 (X11)"})
        assert click.status_code == 302
        target = click.headers["location"]
        assert target.startswith("https://shop.example/") and "utm_source=nudge" in target
        # open-redirect attempts: a destination of one's own is ignored or refused
        sneaky = client.get(local[clicks[-1]] + "?url=https://evil.example/")
        assert sneaky.headers["location"] == target
        for bad in ("https%3A%2F%2Fevil.example%2F", "evil.example", "k1.e30.AAAA"):
            refused = client.get(f"{url}/c/{bad}")
            assert 400 <= refused.status_code < 500 and "location" not in refused.headers
        evil = sign(Keyring({"k1": b"not-the-key" * 4}, signing_id="k1"),
                    Claims("click", "u1", "cart_abandonment", 1, 1, None,
                           "https://evil.example/", 2 * 10**12))
        assert client.get(f"{url}/c/{evil}").status_code == 403  # the wrong key
        token = local[clicks[-1]].rsplit("/", 1)[1]
        kid, body, mac = token.split(".")
        altered = f"{kid}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{mac}"
        assert client.get(f"{url}/c/{altered}").status_code in (400, 403)
        assert client.get(local[pixels[0]].replace("/o/", "/c/")).status_code == 400  # purpose
        assert client.get(local[pixels[0]], headers={"User-Agent": "Mozilla/5.0 "
                                                     "(via ggpht.com GoogleImageProxy)"}
                          ).headers["content-type"] == "image/gif"
        forged_unsub = local[unsubscribe].replace(mac, mac[::-1]) if mac in local[unsubscribe] \
            else local[unsubscribe][:-3] + "xyz"
        assert client.post(forged_unsub, data={"List-Unsubscribe": "One-Click"}
                           ).status_code in (400, 403)
        page = client.get(local[unsubscribe])
        assert page.status_code == 200 and "<form" in page.text and "<script" not in page.text
        done = client.post(local[unsubscribe], data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "unsubscribed" in done.text

    events = [orjson.loads(v) for *_, v, _ in broker.consume_all(topic)]
    made = [(e["event"], e["userId"], e["properties"].get("machine"),
             e["properties"].get("source")) for e in events
            if e.get("context", {}).get("library", {}).get("name") == "nudge-serve"]
    assert sorted(made, key=str) == sorted([
        ("Email Link Clicked", "u1", False, None), ("Email Link Clicked", "u1", True, None),
        ("Email Opened", "u1", True, None), ("Unsubscribed", "u1", None, "one_click")],
        key=str)  # the sneaky click is a real click (same token); nothing from the forgeries

    broker.produce(topic, [_event({
        "type": "track", "event": "Product Viewed", "userId": "z", "messageId": "z2",
        "timestamp": to_iso(now + 23 * 3600_000), "properties": {"product_id": "sku-9"}})])
    (tmp_path / "decisions.jsonl").unlink()
    second = _run(conf)
    stages = {(d["customer_id"], d["stage"]): (d["outcome"], d["reason"]) for d in second}
    assert stages[("u1", 2)] == ("suppressed", "no_consent")
