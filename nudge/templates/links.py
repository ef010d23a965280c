"""Where an email may link: every link and image points to an allowed host.

Event data and catalog data may carry any URL. Before anything reaches a template, the
renderer passes every URL through a LinkPolicy (`link`, `image`); after rendering, every
`href` and `src` attribute of the HTML part and every URL of the text part is checked
again (`sanitise_html`, `sanitise_text`), so a template cannot put a link on another host
either, whoever wrote it. A link on another host becomes the shop link; an image on
another host is left out. Each is counted (the Email's `links_replaced`, the metric
`nudge_links_replaced_total`).

Allowed: http(s) URLs whose host is in `render.link_hosts` (default: the host of
`render.shop_url`), plus the hosts of shop_url and unsubscribe_url themselves (operator
config). Refused besides other hosts: other schemes (javascript:, data:), user info
(`https://shop.example@evil.example`), backslashes, whitespace and control characters
(browsers and Python's urlsplit disagree about those).

>>> policy = LinkPolicy(["shop.example"], "https://shop.example")
>>> policy.allowed("https://shop.example/p/1?x=2"), policy.allowed("https://evil.example/")
(True, False)
>>> policy.allowed("https://shop.example@evil.example/"), policy.allowed("javascript:alert(1)")
(False, False)
>>> product_link("https://shop.example/", "../../x?#<y>")
'https://shop.example/p/..%2F..%2Fx%3F%23%3Cy%3E'
>>> product_link("https://shop.example", "..")
'https://shop.example/p/%2E%2E'
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

_UNSAFE = re.compile(r"[\x00-\x20\x7f\\\u0080-\u009f\u2028\u2029]")
_ATTR = re.compile(r"""(\b(?:href|src)\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_TEXT_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s<>\"']+")
_CACHE_MAX = 65_536


def host_of(url: str) -> str:
    """The lower-case host of an http(s) URL, or "" if it has none."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def product_link(shop_url: str, product_id: str) -> str:
    """The shop's page of a product: its id is one URL-encoded path segment, whatever it
    holds (no `/`, `?`, `#`, and no `.` or `..` segment a browser would resolve)."""
    segment = quote(product_id, safe="")
    if segment in (".", ".."):
        segment = segment.replace(".", "%2E")
    return f"{shop_url.rstrip('/')}/p/{segment}"


class LinkPolicy:
    """Allowed hosts, and the counted replacement of everything else."""

    def __init__(self, hosts: Iterable[str], shop_url: str) -> None:
        self.hosts = frozenset(h.lower() for h in hosts if h)
        self.shop_url = shop_url
        self._seen: dict[str, bool] = {}

    def allowed(self, url: str) -> bool:
        ok = self._seen.get(url)
        if ok is None:
            ok = self._check(url)
            if len(self._seen) >= _CACHE_MAX:
                self._seen.clear()
            self._seen[url] = ok
        return ok

    def _check(self, url: str) -> bool:
        if _UNSAFE.search(url):
            return False
        try:
            parts = urlsplit(url)
            host = parts.hostname
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host or not port_ok:
            return False
        if "@" in parts.netloc:
            return False
        return host.lower() in self.hosts

    def sanitise_html(self, text: str) -> tuple[str, int]:
        """`href` and `src` attributes on other hosts -> the shop link / nothing, counted.
        Attribute values are HTML-escaped: compared unescaped. `mailto:` links stay."""
        replaced = 0

        def attr(m: re.Match[str]) -> str:
            nonlocal replaced
            value = html.unescape(m.group(3))
            if self.allowed(value) or (value.startswith("mailto:")
                                       and not _UNSAFE.search(value)):
                return m.group(0)
            replaced += 1
            is_src = m.group(1).lstrip().lower().startswith("src")
            new = "" if is_src else html.escape(self.shop_url, quote=True)
            return f"{m.group(1)}{m.group(2)}{new}{m.group(2)}"

        out = _ATTR.sub(attr, text)
        return out, replaced

    def sanitise_text(self, text: str) -> tuple[str, int]:
        """URLs on other hosts in a plain-text part (mail clients make them links)."""
        replaced = 0

        def url(m: re.Match[str]) -> str:
            nonlocal replaced
            value = m.group(0)
            if self.allowed(value):
                return value
            replaced += 1
            return self.shop_url

        return _TEXT_URL.sub(url, text), replaced
