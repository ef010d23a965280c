"""Every link and image of every template points to an allowed host, whatever the data says
(issue 13 §1): hostile URLs and product ids from events or a feed never shape a link."""

from __future__ import annotations

import dataclasses
import html
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from nudge.core.config import Config, load_text
from nudge.core.events import Product
from nudge.core.records import Decision, EmailContext, Incentive
from nudge.core.timefmt import parse_iso
from nudge.templates.links import LinkPolicy
from nudge.templates.render import TEMPLATE_DIR, Renderer

HOSTILE_URLS = [
    "https://evil.example/card",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://shop.example@evil.example/x",
    "https://evil.example\\@shop.example/x",
    "https://evil.example\\.shop.example/",
    "//evil.example/x",
    "https://shop.example.evil.example/",
    "https://SHOP.EXAMPLE:99999/x",
    "http://[::1/",
    "https://evil.example/\n<b>",
    'https://evil.example/" onmouseover="x',
]
HOSTILE_IDS = ["../../x?#<y>", "..", "a/b", 'x" onerror="y', "\u202eevil"]


def lines(n: int) -> tuple[Product, ...]:
    out = []
    for i in range(n):
        url = HOSTILE_URLS[i % len(HOSTILE_URLS)]
        pid = HOSTILE_IDS[i % len(HOSTILE_IDS)]
        out.append(Product(pid, f"Visit https://evil.example/{i}", 10.0, 1, "c",
                            HOSTILE_URLS[(i + 3) % len(HOSTILE_URLS)], url if i % 3 else ""))
    return tuple(out)


def decisions() -> list[Decision]:
    ctx = EmailContext("ann@example.com", "Ann", "Lee", None, cart=lines(12), cart_value=120.0,
                       viewed=lines(12)[::-1], recommendations=lines(12)[3:],
                       segments=("vip",), lifecycle="active")
    out = []
    for trigger_dir in sorted(p for p in TEMPLATE_DIR.iterdir() if p.is_dir()
                              and (p / "body.html.j2").exists()):
        for stage in (1, 2, 3):
            out.append(Decision("ann", trigger_dir.name, 1, stage,
                                parse_iso("2026-10-05T11:00:00Z"), "sent", None, ctx,
                                template=trigger_dir.name,
                                incentive=Incentive("10% off", "CODE")))
    return out


def urls(mail_html: str, text: str) -> list[str]:
    attrs = [html.unescape(v) for v in re.findall(r"(?:href|src)\s*=\s*\"([^\"]*)\"",
                                                  mail_html, re.I)]
    assert not re.search(r"(?:href|src)\s*=\s*'", mail_html, re.I)
    return attrs + re.findall(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s<>\"']+", text)


@pytest.mark.parametrize("config", [Config(), load_text(
    '[render]\nlink_hosts = ["shop.example", "cdn.shop.example"]'), load_text(
    '[tracking]\nenabled = true')])
def test_every_template_links_only_to_allowed_hosts(config: Config) -> None:
    renderer = Renderer(config, strict=True)
    allowed = {"shop.example", "cdn.shop.example"} if config.render.link_hosts else \
        {"shop.example", "t.shop.example"} if config.tracking.enabled else {"shop.example"}
    ds = decisions()
    assert {d.trigger for d in ds} == {"cart_abandonment", "browse_abandonment",
                                       "post_purchase", "win_back", "welcome"}
    for d in ds:
        mail = renderer.render(d)
        found = urls(mail.html, mail.text)
        assert found, d.trigger
        for u in found:
            if u.startswith("mailto:"):
                continue
            parts = urlsplit(u)
            assert parts.scheme == "https" and parts.hostname in allowed, (d.trigger, u)
            assert "@" not in parts.netloc and "\\" not in u
            # a product id is one encoded path segment: it never adds one or a query
            assert "/p/../" not in u and "<" not in u and "/p/a/b" not in u
        assert "evil.example" not in mail.html and "evil.example" not in mail.text
        assert "javascript:" not in mail.html.lower()
        if "products" in mail.html or d.trigger == "cart_abandonment":
            assert mail.links_replaced > 0


def test_product_links_encode_the_id_as_one_segment() -> None:
    ctx = EmailContext("ann@example.com", "Ann", None, None,
                       cart=tuple(Product(pid, "X", 1.0, 1, "c", "", "") for pid in
                                  HOSTILE_IDS), cart_value=5.0)
    d = Decision("ann", "cart_abandonment", 1, 1, 0, "sent", None, ctx,
                 template="cart_abandonment")
    mail = Renderer(Config(), strict=True).render(d)
    links = [u.split("?")[0] for u in re.findall(r"https://shop\.example/p/[^\s]+", mail.text)]
    assert links == ["https://shop.example/p/..%2F..%2Fx%3F%23%3Cy%3E",
                     "https://shop.example/p/%2E%2E", "https://shop.example/p/a%2Fb",
                     "https://shop.example/p/x%22%20onerror%3D%22y",
                     "https://shop.example/p/%E2%80%AEevil"]
    assert mail.links_replaced == 0  # nothing to replace: the shop's own links


def test_a_template_cannot_link_elsewhere_either(tmp_path: Path) -> None:
    # Templates are checked after rendering too: a link written into one is replaced.
    for name in ("_layout.html.j2", "_blocks.html.j2", "_blocks.txt.j2",
                 "_segment_note.html.j2"):
        (tmp_path / name).write_text((TEMPLATE_DIR / name).read_text())
    t = tmp_path / "cart_abandonment"
    t.mkdir()
    for name in ("subject.txt.j2", "preheader.txt.j2"):
        (t / name).write_text((TEMPLATE_DIR / "cart_abandonment" / name).read_text())
    (t / "body.html.j2").write_text(
        '{% extends "_layout.html.j2" %}{% block content %}'
        '<a href="https://evil.example/a">x</a><img src=\'https://evil.example/i.png\'>'
        '<a href="{{ cart_url }}">cart</a>{% endblock %}')
    (t / "body.txt.j2").write_text("Go to https://evil.example/t or {{ cart_url }}")
    ctx = EmailContext("ann@example.com", "Ann", None, None)
    d = Decision("ann", "cart_abandonment", 1, 1, 0, "sent", None, ctx,
                 template="cart_abandonment")
    mail = Renderer(Config(), strict=True, directory=tmp_path).render(d)
    assert "evil.example" not in mail.html + mail.text
    assert mail.links_replaced == 3
    assert "https://shop.example/cart?utm_source" in mail.text


def test_link_hosts_are_validated_and_the_policy_is_strict() -> None:
    from nudge.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"render\.link_hosts"):
        load_text('[render]\nlink_hosts = ["https://shop.example/"]')
    policy = LinkPolicy(["shop.example"], "https://shop.example")
    assert all(not policy.allowed(u) for u in HOSTILE_URLS)
    assert policy.allowed("http://shop.example/p/1") and policy.allowed("https://shop.example")
    cfg = dataclasses.replace(Config(), render=dataclasses.replace(
        Config().render, unsubscribe_url="https://mail.shop.example/u?t={token}"))
    from nudge.templates.render import link_policy

    assert link_policy(cfg).hosts == {"shop.example", "mail.shop.example"}
