"""Templates: personalised, inert against hostile data, strict in tests, forgiving in prod."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from nudge.core.config import Config
from nudge.core.errors import RenderError
from nudge.core.events import Product
from nudge.core.keyring import Keyring
from nudge.core.records import Decision, EmailContext
from nudge.core.tokens import ForgedToken, verify
from nudge.templates.render import Renderer, preview, with_utm

HOSTILE = '<script>alert("x")</script>{{ 7*7 }}{% raw %}\r\nBcc: victim@example.com'


def decision(first_name: str | None = "Ann", product: str = "Linen Shirt", stage: int = 1,
             url: str = "https://shop.example/p/sku-1?color=red") -> Decision:
    ctx = EmailContext("ann@example.com", first_name, "Lee", "Europe/Berlin",
                       (Product("sku-1", product, 49.0, 2, "apparel",
                                 "https://shop.example/img/1.jpg", url),), 98.0)
    return Decision("cust-1", "cart_abandonment", 3, stage, 1790848800000, "sent", None, ctx)


def test_personalised_parts() -> None:
    e = Renderer(Config(), strict=True).render(decision())
    assert e.subject == "Ann, you left something in your cart"
    assert "1 item" in e.preheader and "€98.00" in e.preheader
    assert "Hi Ann" in e.html and "Linen Shirt" in e.html and "€49.00" in e.html
    assert "Linen Shirt (qty 2, €49.00 each)" in e.text
    assert e.key == "cust-1\x1fcart_abandonment\x1f3\x1f1"
    assert e.to == "ann@example.com"


def test_later_stage_wording_and_first_name_fallback() -> None:
    e = Renderer(Config(), strict=True).render(decision(first_name=None, stage=2))
    assert e.subject == "Still thinking it over, there?"


def test_links_carry_utm_parameters_and_keep_their_query() -> None:
    e = Renderer(Config(), strict=True).render(decision())
    assert ("https://shop.example/p/sku-1?color=red&amp;utm_source=nudge&amp;utm_medium=email"
            "&amp;utm_campaign=cart_abandonment&amp;utm_content=stage-1") in e.html
    assert "https://shop.example/cart?utm_source=nudge" in e.text
    assert with_utm("javascript:alert(1)", "a", "b", "c", "d") == ""


@pytest.mark.parametrize("field", ["first_name", "product"])
def test_hostile_data_renders_inert(field: str) -> None:
    d = decision(**{field: HOSTILE})
    e = Renderer(Config(), strict=True).render(d)
    assert "<script>" not in e.html and "&lt;script&gt;" in e.html
    for part in (e.html, e.text, e.subject):
        assert "49" not in part.replace("49.00", "")  # {{ 7*7 }} was not evaluated
    assert "{{ 7*7 }}" in e.text
    assert "\r" not in e.subject and "\n" not in e.subject and "\n" not in e.preheader
    for name, value in e.headers:
        assert "\r" not in value and "\n" not in value, name


def test_javascript_product_links_are_dropped() -> None:
    e = Renderer(Config(), strict=True).render(decision(url="javascript:alert(1)"))
    assert "javascript:" not in e.html


def test_unsubscribe_headers_carry_a_token_signed_with_the_keyring() -> None:
    ring = Keyring({"k7": b"s" * 32}, signing_id="k7")
    d = decision()
    e = Renderer(Config(), strict=True, keyring=ring).render(d)
    headers = dict(e.headers)
    link = headers["List-Unsubscribe"].split(">")[0][1:]
    assert link.startswith("https://shop.example/unsubscribe?token=k7.")
    assert headers["List-Unsubscribe"].endswith(
        ", <mailto:unsubscribe@shop.example?subject=unsubscribe>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert link in e.html and link in e.text
    claims = verify(ring, token, purpose="unsubscribe", now=d.due)
    assert (claims.customer_id, claims.trigger, claims.episode, claims.stage) == \
        (d.customer_id, d.trigger, d.episode, d.stage)
    assert claims.email_key == e.key == d.idempotency_key
    assert claims.expires == d.due + Config().secrets.unsubscribe_lifetime
    # another keyring (another shop, or the demo key) cannot verify it
    with pytest.raises(ForgedToken):
        verify(Keyring({"k7": b"t" * 32}, signing_id="k7"), token, purpose="unsubscribe",
               now=d.due)
    # the same decision renders the same token (event time, no wall clock)
    again = Renderer(Config(), strict=True, keyring=ring).render(d)
    assert dict(again.headers)["List-Unsubscribe"] == headers["List-Unsubscribe"]


def test_missing_variable_fails_loudly_in_strict_mode_and_falls_back_in_production(
        tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    for name, body in [("subject.txt.j2", "Hi {{ nobody.name }}"), ("preheader.txt.j2", "p"),
                       ("body.html.j2", "<p>{{ missing }}</p>"), ("body.txt.j2", "t")]:
        (tmp_path / "t" / name).write_text(body)
    d = dataclasses.replace(decision(), trigger="t")
    with pytest.raises(RenderError, match=r"subject\.txt\.j2"):
        Renderer(Config(), strict=True, directory=tmp_path).render(d)
    e = Renderer(Config(), strict=False, directory=tmp_path).render(d)
    assert e.subject == "Hi" and e.html == "<p></p>"


def test_sandbox_blocks_unsafe_attribute_access(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    for name, body in [("subject.txt.j2", "{{ cart.__class__.__mro__ }}"),
                       ("preheader.txt.j2", ""), ("body.html.j2", ""), ("body.txt.j2", "")]:
        (tmp_path / "t" / name).write_text(body)
    d = dataclasses.replace(decision(), trigger="t")
    with pytest.raises(RenderError):
        Renderer(Config(), strict=True, directory=tmp_path).render(d)


def test_macros_render_as_without_the_sandbox_shortcut(tmp_path: Path) -> None:
    # Macro calls skip the sandbox's callable checks (nudge/templates/render.py): keyword and
    # default arguments, calls inside loops, and {% call %} blocks must behave as in Jinja.
    (tmp_path / "t").mkdir()
    body = ('{% macro item(name, qty=1) %}[{{ name }} x{{ qty }}]{% endmacro %}'
            '{% macro box(name) %}({{ name }}{{ caller() }}){% endmacro %}'
            '{% for line in cart %}{{ item(line.name, qty=line.quantity) }}{% endfor %}'
            '{{ item("extra") }}{% call box("wrapped") %}!{% endcall %}')
    for name, text in [("subject.txt.j2", "s"), ("preheader.txt.j2", "p"),
                       ("body.html.j2", body), ("body.txt.j2", body)]:
        (tmp_path / "t" / name).write_text(text)
    e = Renderer(Config(), strict=True, directory=tmp_path).render(
        dataclasses.replace(decision(), trigger="t"))
    assert e.text == "[Linen Shirt x2][extra x1](wrapped!)"
    assert e.html == e.text


def test_preview_writes_an_html_page(tmp_path: Path) -> None:
    out = preview(Config(), "cart_abandonment", tmp_path / "p.html")
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Ceramic Pour-Over Set" in html
