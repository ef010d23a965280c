"""An Email as an RFC 5322 message: multipart/alternative (text, then HTML), UTF-8.

The Date header is the decision's event time and the Message-ID derives from the
idempotency key, so the same decision always gives the same message, byte for byte.

The bytes are assembled here rather than through `email.message.EmailMessage`, which
costs ~3 ms a message (its header registry and folding machinery) against ~35 µs here;
the outbox and SMTP transports send one per decision. What the stdlib would do for us is
done explicitly: non-ASCII header text becomes RFC 2047 encoded words, bodies are
quoted-printable (lines stay under 76 characters), every line ends in CRLF, and header
values never carry a line break. tests/test_delivery.py parses the result with the
stdlib's strict policy and compares every field.
"""

from __future__ import annotations

import binascii
import hashlib
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

from nudge.core.address import canonical
from nudge.core.errors import PermanentDeliveryError
from nudge.core.ids import key_digest
from nudge.core.records import Email
from nudge.core.timefmt import to_datetime


@lru_cache(maxsize=64)  # the From address is the same on every email
def _domain(from_addr: str) -> str:
    return parseaddr(from_addr)[1].rpartition("@")[2] or "nudge.invalid"


def message_id(email: Email) -> str:
    domain = _domain(email.from_addr)
    digest = key_digest(email.key)
    return f"<{digest}@{domain}>"


# For callers that want a message object (SMTP's send_message, tests); 998 is RFC 5322's
# hard line limit, so long structured headers such as List-Unsubscribe are not refolded.
POLICY = SMTP.clone(max_line_length=998)


def _flat(value: str) -> str:
    # Header values come from templates, config and customer data: a CR or LF would let
    # one of them add headers of its own.
    return value.replace("\r", " ").replace("\n", " ")


def _encoded_words(value: str, width: int = 45) -> str:
    """RFC 2047 "B" encoded words of `width` bytes of UTF-8 (45: under 76 characters with
    the markers), never splitting a UTF-8 sequence, folded onto continuation lines. The
    stdlib's Header does the same in ~400 µs for a subject (it weighs Q against B per
    character); this takes a few."""
    raw = value.encode("utf-8")
    words = []
    i, n = 0, len(raw)
    while i < n:
        j = min(i + width, n)
        while j < n and raw[j] & 0xC0 == 0x80:  # a continuation byte: back off
            j -= 1
        words.append(f"=?utf-8?b?{binascii.b2a_base64(raw[i:j], newline=False).decode()}?=")
        i = j
    return "\r\n ".join(words)


def _text_header(value: str) -> str:
    value = _flat(value)
    if value.isascii():
        return value
    return _encoded_words(value)


_SPECIALS = frozenset('()<>[]:;@,."\\ \t\r\n')


def _address(value: str) -> str:
    # The usual To: a bare address, which parseaddr would return unchanged (~30 µs).
    local, at, domain = value.partition("@")
    if at and value.isascii() and ".." not in value \
            and not _SPECIALS.intersection(local.replace(".", "")) \
            and not _SPECIALS.intersection(domain.replace(".", "")) \
            and not (local.startswith(".") or local.endswith(".")):
        return value
    return _named_address(value)


@lru_cache(maxsize=4096)  # the From address is the same on every email
def _named_address(value: str) -> str:
    name, addr = parseaddr(value)
    if not name:
        return addr
    # formataddr() may already have made the name an encoded word: decode it so that the
    # line-break check sees the real text
    name = _flat(str(make_header(decode_header(name))))
    if name.isascii():
        return formataddr((name, addr))
    # One word: in a display name the stdlib's parser keeps the space between two.
    return f"{_encoded_words(name, width=len(name) * 4)} <{addr}>"


def recipient(email: Email) -> str:
    """The one address the email goes to, exactly as `To:` and SMTP's RCPT carry it.

    Parse accepts only such addresses (nudge/core/address.py); this is the last gate before
    a transport, so nothing else (a record from an older version, a template bug) can put
    a second recipient, a comment or a control character on the wire."""
    address = canonical(email.to)
    if address is None or address != email.to:
        raise PermanentDeliveryError(
            f"email {email.key!r}: the recipient is not a plain address (dot-atom local part "
            "at a DNS domain name)")
    return address


def _qp(text: str) -> bytes:
    # binascii's quoted-printable with CRLF line ends: normalise line ends first so a bare
    # LF in a template never reaches the wire.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"  # as the stdlib does: the delimiter's CRLF is not part of the body
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _boundary(email: Email) -> str:
    return "==nudge-" + hashlib.sha256(b"boundary:" + email.key.encode()).hexdigest()[:24]


def to_bytes(email: Email) -> bytes:
    """The wire form of `email`, CRLF line ends, deterministic for the same Email."""
    boundary = _boundary(email)
    head = [
        f"From: {_address(email.from_addr)}",
        f"To: {recipient(email)}",
        f"Subject: {_text_header(email.subject)}",
        f"Date: {format_datetime(to_datetime(email.due))}",
        f"Message-ID: {message_id(email)}",
    ]
    head += [f"{name}: {_text_header(value)}" for name, value in email.headers]
    head += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']
    part = ('--{b}\r\nContent-Type: text/{sub}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    return b"".join((
        "\r\n".join(head).encode("utf-8"), b"\r\n\r\n",
        part.format(b=boundary, sub="plain").encode("ascii"), _qp(email.text), b"\r\n",
        part.format(b=boundary, sub="html").encode("ascii"), _qp(email.html), b"\r\n",
        f"--{boundary}--\r\n".encode("ascii"),
    ))


def to_mime(email: Email) -> EmailMessage:
    """The same message as an object (for `smtplib.send_message` and inspection)."""
    msg = BytesParser(_class=EmailMessage, policy=POLICY).parsebytes(to_bytes(email))
    assert isinstance(msg, EmailMessage)
    return msg
