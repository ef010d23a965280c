"""Issue 13 §1: one customer's events never change what another customer is shown.

The reproducer, through `nudge replay`: customer mallory sends `Product Viewed` of a real
product with the name "Payment failed - update your card" and a link to evil.example. Before
the catalog, that name became the subject of Vic's browse-abandonment email and the link his
product link. Now what an email shows of products beyond the recipient's own cart comes
from the shop's catalog, and without a catalog from nowhere.
"""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
import sys
from pathlib import Path

import orjson

from nudge.app.samplecatalog import CATALOG_COLUMNS
from nudge.sources.catalogfiles import csv_text

ROOT = Path(__file__).resolve().parents[1]
EVIL_NAME = "Payment failed - update your card"


def _view(user: str, mid: str, at: str, pid: str, name: str, url: str, image: str) -> dict:
    return {"type": "track", "event": "Product Viewed", "userId": user, "messageId": mid,
            "timestamp": at, "properties": {"product_id": pid, "name": name, "price": 49.0,
                                            "category": "apparel", "url": url,
                                            "image_url": image}}


def events() -> list[dict]:
    shop = ("Linen Shirt", "https://shop.example/p/sku-1", "https://shop.example/img/sku-1.jpg")
    evil = (EVIL_NAME, "https://evil.example/card", "https://evil.example/x.png")
    out: list[dict] = [
        {"type": "identify", "userId": "vic", "messageId": "v0",
         "timestamp": "2026-10-05T09:00:00Z",
         "traits": {"email": "vic@example.com", "first_name": "Vic",
                    "marketing_consent": True}},
        {"type": "identify", "userId": "wen", "messageId": "w0",
         "timestamp": "2026-10-05T09:00:00Z",
         "traits": {"email": "wen@example.com", "first_name": "Wen",
                    "marketing_consent": True}},
    ]
    # mallory views both products with her own name and links, before, between and after
    # the others' views, in sessions of her own (co-views: sku-1 with sku-2).
    for n, minute in enumerate((0, 1, 30, 31, 90)):
        at = f"2026-10-05T10:{minute % 60:02d}:00Z" if minute < 60 else "2026-10-05T11:30:00Z"
        out.append(_view("mallory", f"m{n}", at, "sku-1" if n % 2 == 0 else "sku-2", *evil))
    for n in range(3):  # three views: browse abandonment
        out.append(_view("vic", f"v{n + 1}", f"2026-10-05T10:0{n + 2}:00Z", "sku-1", *shop))
        out.append(_view("wen", f"w{n + 1}", f"2026-10-05T10:1{n}:00Z", "sku-3",
                         "Wool Scarf", "https://shop.example/p/sku-3", ""))
    out.append(_view("vic", "v9", "2026-10-06T16:00:00Z", "sku-9", "Mug",
                     "https://shop.example/p/sku-9", ""))  # moves event time on
    return out


CATALOG = [
    {"id": "sku-1", "title": "Linen Shirt", "price": "49.00 EUR", "sale_price": "39.00 EUR",
     "availability": "in stock", "link": "https://shop.example/p/sku-1",
     "image_link": "https://shop.example/img/sku-1.jpg", "product_type": "apparel",
     "brand": "Acme"},
    {"id": "sku-2", "title": "Leather Belt", "price": "19.00 EUR", "sale_price": "",
     "availability": "in stock", "link": "https://shop.example/p/sku-2",
     "image_link": "https://shop.example/img/sku-2.jpg", "product_type": "apparel",
     "brand": "Acme"},
    {"id": "sku-3", "title": "Wool Scarf", "price": "29.00 EUR", "sale_price": "",
     "availability": "in stock", "link": "https://shop.example/p/sku-3",
     "image_link": "", "product_type": "apparel", "brand": "Acme"},
]


def replay(tmp_path: Path, *, catalog: bool) -> dict[str, email.message.EmailMessage]:
    """Every email, keyed by (recipient, journey) as "to journey"."""
    feed = tmp_path / "events.jsonl"
    feed.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events()))
    conf = tmp_path / "nudge.toml"
    text = f"""
[triggers.browse_abandonment]
enabled = true
[triggers.welcome]
enabled = true
stages = ["1d"]
[caps]
max_emails = 5
[delivery]
ledger_dir = "{tmp_path / 'ledger'}"
[outputs]
segments = ""
outcomes = ""
profiles = ""
"""
    if catalog:
        (tmp_path / "catalog.csv").write_text(csv_text(CATALOG, CATALOG_COLUMNS))
        text += '[catalog]\nfiles = ["catalog.csv"]\n'
    conf.write_text(text)
    r = subprocess.run([sys.executable, "-m", "nudge", "replay", str(feed), "--config",
                        str(conf), "--decisions", str(tmp_path / "decisions.jsonl"),
                        "--outbox", str(tmp_path / "outbox"), "--dead-letters",
                        str(tmp_path / "dead.jsonl")],
                       cwd=tmp_path, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    mails = {}
    for path in sorted((tmp_path / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        journey = path.name.split("-")[1]
        mails[f"{msg['To']} {journey}"] = msg
    assert len(mails) >= 3, sorted(mails)
    return mails  # type: ignore[return-value]


def _text(msg: email.message.EmailMessage) -> str:
    parts = [str(msg["Subject"])]
    for part in msg.walk():
        if part.get_content_type() in ("text/plain", "text/html"):
            parts.append(part.get_content())
    return "\n".join(parts)


def _links(msg: email.message.EmailMessage) -> set[str]:
    body = _text(msg)
    return set(re.findall(r"(?:href|src)=\"([^\"]*)\"", body)) | \
        set(re.findall(r"https?://[^\s\"<>]+", body))


def test_mallorys_events_reach_no_other_customer_with_a_catalog(tmp_path: Path) -> None:
    mails = replay(tmp_path, catalog=True)
    vic = mails["vic@example.com browse_abandonment"]
    # the product Vic looked at, as the shop's catalog says: its name and its sale price
    assert str(vic["Subject"]) == "Vic, still looking at Linen Shirt?"
    body = _text(vic)
    assert "€39.00" in body
    # recommendations come from the catalog too (sku-2 was co-viewed by mallory: the
    # statistics may count her views, but what is shown is the shop's own)
    assert "Leather Belt" in body
    for to, msg in mails.items():
        text = _text(msg)
        assert EVIL_NAME not in text, to
        assert "evil.example" not in text, to
        assert all(re.match(r"https://shop\.example[/?]", u) or u.startswith("mailto:")
                   for u in _links(msg)), (to, _links(msg))


def test_without_a_catalog_nothing_crosses_customers(tmp_path: Path) -> None:
    mails = replay(tmp_path, catalog=False)
    vic = mails["vic@example.com browse_abandonment"]
    assert str(vic["Subject"]) == "Vic, still looking?"  # no product name from anyone
    for to, msg in mails.items():
        text = _text(msg)
        assert EVIL_NAME not in text and "evil.example" not in text, to
        assert "Shoppers who viewed these also liked" not in text  # recommendations are off
        assert "Leather Belt" not in text and "Wool Scarf" not in text


def test_own_cart_links_to_other_hosts_are_replaced_and_counted(tmp_path: Path) -> None:
    from nudge.core.config import Config
    from nudge.core.events import Product
    from nudge.core.records import Decision, EmailContext
    from nudge.core.timefmt import parse_iso
    from nudge.templates.render import Renderer

    line = Product("../../x?#<y>", "Shirt", 10.0, 1, "apparel", "https://evil.example/i.png",
                    "https://evil.example/p")
    bare = Product("../../x?#<y>", "Shirt", 10.0, 1, "apparel", "", "")
    ctx = EmailContext("ann@example.com", "Ann", None, None, cart=(line, bare), cart_value=20.0)
    d = Decision("ann", "cart_abandonment", 1, 1, parse_iso("2026-10-05T11:00:00Z"), "sent",
                 None, ctx, template="cart_abandonment")
    mail = Renderer(Config()).render(d)
    assert "evil.example" not in mail.html + mail.text
    assert mail.links_replaced == 2  # the link and the image of the first line
    assert "https://shop.example/p/..%2F..%2Fx%3F%23%3Cy%3E?utm_source" in mail.text
