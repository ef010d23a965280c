"""Where an email may link: every link and image points to an allowed host.

Event data and catalog data may carry any URL. Before anything reaches a template, the
renderer passes every URL through a LinkPolicy (`link`, `image`); after rendering, every
`href` and `src` attribute of the HTML part and every URL of the text part is checked
again (`sanitise_html`, `sanitise_text`), so a template cannot put a link on another host
either, whoever wrote it. A URL written as text in a product's name ("visit https://...")
is replaced too (`clean`), since mail clients make links of those. A link on another host
becomes the shop link; an image on another host is left out. Each is counted (the Email's
`links_replaced`, the metric `nudge_links_replaced_total`).

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
        self._seen_escaped: dict[str, bool] = {}

    def allowed_escaped(self, value: str) -> bool:
        """`allowed` of an HTML-escaped value (an attribute's, or text's), cached as written:
        the same product links recur email after email."""
        ok = self._seen_escaped.get(value)
        if ok is None:
            ok = self.allowed(html.unescape(value))
            if len(self._seen_escaped) >= _CACHE_MAX:
                self._seen_escaped.clear()
            self._seen_escaped[value] = ok
        return ok

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
        """`href` and `src` attribute values on other hosts -> the shop link / nothing,
        counted. Values are HTML-escaped: compared unescaped. `mailto:` links stay."""
        replaced = 0
        pieces: list[str] = []
        at = 0
        shop = html.escape(self.shop_url, quote=True)
        for start, end, is_src in _attributes(text):
            raw = text[start:end]
            if self.allowed_escaped(raw):
                continue
            value = html.unescape(raw)
            if value.startswith("mailto:") and not _UNSAFE.search(value):
                continue
            replaced += 1
            pieces.append(text[at:start])
            pieces.append("" if is_src else shop)
            at = end
        if pieces:
            pieces.append(text[at:])
            text = "".join(pieces)
        return text, replaced

    def sanitise_text(self, text: str) -> tuple[str, int]:
        """URLs on other hosts in a plain-text part (mail clients make them links)."""
        return self._urls(text, self.shop_url, escaped=False)

    def clean(self, text: str) -> tuple[str, int]:
        """Data shown as text (a product's name) without URLs on other hosts."""
        if "://" not in text:
            return text, 0
        return self._urls(text, self.shop_url, escaped=False)

    def _urls(self, text: str, shop: str, *, escaped: bool) -> tuple[str, int]:
        """Every `scheme://...` in `text` on another host -> `shop`. A scan for "://" (str.find)
        rather than a regex: a pattern that starts with the scheme tries every position."""
        i = text.find("://")
        if i < 0:
            return text, 0
        pieces: list[str] = []
        at = 0
        replaced = 0
        while i >= 0:
            start = i
            while start > 0 and text[start - 1] in _SCHEME_CHARS:
                start -= 1
            end = _TAIL.match(text, i + 3).end()  # type: ignore[union-attr]
            value = text[start:end]
            if start < i and start >= at and not (
                    self.allowed_escaped(value) if escaped else self.allowed(value)):
                pieces.append(text[at:start])
                pieces.append(shop)
                at = end
                replaced += 1
            i = text.find("://", end)
        if not pieces:
            return text, 0
        pieces.append(text[at:])
        return "".join(pieces), replaced


_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_TAIL = re.compile(r"[^\s<>\"'()]*")
# An attribute `href` or `src` in the lower-cased text, after whitespace, "/" or a quote,
# then "=" and its value: quoted up to the same quote (or the end), or unquoted up to
# whitespace or ">". The name comes first so the regex engine finds it by a literal scan,
# the character before it checked by a lookbehind; one expression per name, so a "src="
# inside an href's value is still found and checked.
_VALUE = r"""[ \t\r\n\f]*=[ \t\r\n\f]*(?:"([^"]*)|'([^']*)|([^\s>]*))"""
_HREF = re.compile(r"""href(?<=[ \t\r\n\f/"']href)""" + _VALUE)
_SRC = re.compile(r"""src(?<=[ \t\r\n\f/"']src)""" + _VALUE)


def _attributes(text: str) -> list[tuple[int, int, bool]]:
    """(value start, value end, is src) of every href and src attribute, in order."""
    low = text.lower()
    found: list[tuple[int, int, bool]] = []
    for pattern, is_src in ((_HREF, False), (_SRC, True)):
        for m in pattern.finditer(low):
            group = 1 if m.start(1) >= 0 else 2 if m.start(2) >= 0 else 3
            found.append((m.start(group), m.end(group), is_src))
    found.sort()
    return found
