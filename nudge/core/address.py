"""Email addresses that cannot be tricked: a dot-atom local part at a DNS domain name.

Event producers are untrusted, and an address is the one field that decides who receives an
email. RFC 5322 allows far more than any mailbox needs (quoted local parts, comments, group
syntax, address literals), and every extra form is a way to make what a parser reads differ
from what a transport sends: `"Evil:victim@example.com"` reads as a group to some parsers,
`victim@example.com(evil)@attacker.example` as a comment to others. So only this is accepted:

- a local part of 1-64 characters: dot-separated atoms of RFC 5322 `atext`, plus, for
  internationalised mailboxes (RFC 6531), letters, marks and digits outside ASCII;
- one `@`;
- a domain name of at least two labels (letters, digits, hyphens; no leading or trailing
  hyphen; at most 63 characters each), with a top-level label that is not all digits (so no
  IPv4 address), written in ASCII or as an internationalised name (IDNA 2008, UTS 46);
- 254 characters at most, no control, format, space or separator characters anywhere.

`canonical` returns the address as Nudge keeps and sends it: the local part as given (NFC),
the domain lowercase in its ASCII form (A-labels); `normalised` is the form consent is keyed
by (the whole address lowercase: mailbox providers treat local parts case-insensitively).
This is the only module that imports `idna`.

>>> canonical("Ann.Lee+shop@Example.COM")
'Ann.Lee+shop@example.com'
>>> canonical("ann@bücher.example")
'ann@xn--bcher-kva.example'
>>> [canonical(a) for a in ("Evil:victim@example.com", "a\\x00b@example.com",
...     "victim@example.com(evil)@attacker.example", "a@b.c@example.com", "x@[127.0.0.1]")]
[None, None, None, None, None]
>>> normalised("Ann.Lee@Example.com")
'ann.lee@example.com'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Final

import idna

MAX_ADDRESS: Final = 254
MAX_LOCAL: Final = 64

_ATOMS_ASCII = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_ATEXT: Final = frozenset("!#$%&'*+/=?^_`{|}~-")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The usual address in one match (ASCII, any case): what the checks below accept of it.
# Labels here may still start or end with a hyphen: checked after (cheaper than in the
# expression, which would backtrack over every label).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ASCII_ADDRESS = re.compile(
    rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9-]{{1,63}}(?:\.[A-Za-z0-9-]{{1,63}})+)")


def _local_ok(local: str) -> bool:
    if len(local) > MAX_LOCAL:
        return False
    if local.isascii():
        return _ATOMS_ASCII.fullmatch(local) is not None
    for atom in local.split("."):
        if not atom:
            return False  # a leading, trailing or doubled dot
        for ch in atom:
            if ch.isascii():
                if not (ch.isalnum() or ch in _ATEXT):
                    return False
            elif unicodedata.category(ch)[0] not in "LMN":
                return False  # controls, format characters (bidi, zero width), spaces
    return True


def _domain(domain: str) -> str | None:
    """The domain's lowercase ASCII form, or None if it is not a DNS name."""
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    domain = domain.lower()
    labels = domain.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return domain


@lru_cache(maxsize=4096)
def canonical(text: str) -> str | None:
    """The address as Nudge keeps and sends it, or None if `text` is not one it accepts."""
    if len(text) > MAX_ADDRESS:
        return None
    if text.isascii():  # the usual case in one regular expression (~1 µs against ~8)
        m = _ASCII_ADDRESS.fullmatch(text)
        if m is None or len(m.group(1)) > MAX_LOCAL:
            return None
        domain = m.group(2)
        if domain[0] == "-" or domain[-1] == "-" or ".-" in domain or "-." in domain or \
                domain[domain.rindex(".") + 1:].isdigit():
            return None
        lowered = domain.lower()
        return text if lowered == domain else f"{m.group(1)}@{lowered}"
    if text.count("@") != 1:
        return None
    local, _, domain = text.partition("@")
    if not local.isascii():
        local = unicodedata.normalize("NFC", local)
    if not local or not _local_ok(local):
        return None
    ascii_domain = _domain(domain)
    if ascii_domain is None:
        return None
    address = f"{local}@{ascii_domain}"
    return address if len(address) <= MAX_ADDRESS else None


def normalised(address: str) -> str:
    """The form an address's consent is keyed by: canonical, then lowercase. An address
    that is not canonical-able normalises to itself lowercased (it never receives email)."""
    return (canonical(address) or address).lower()


def digest(address: str) -> bytes:
    """What the suppression list keeps of an address: a 16-byte BLAKE2b digest of its
    normalised form, never the address (an erased customer's address must not stay)."""
    return hashlib.blake2b(normalised(address).encode(), digest_size=16,
                           person=b"nudge-address").digest()
