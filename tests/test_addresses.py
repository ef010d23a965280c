"""Addresses that cannot be tricked (issue 13, section 4): only a dot-atom local part at a
DNS domain name is accepted; anything else is a dead letter at parse time, and what is
accepted is exactly what reaches `To:` and SMTP's RCPT TO."""

from __future__ import annotations

import socket
import unicodedata
from collections.abc import Iterator
from email import policy
from email.parser import Parser
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nudge.core.address import canonical
from nudge.core.config import Config, EventsConfig
from nudge.core.deliveryconfig import SmtpConfig
from nudge.core.errors import InputError, PermanentDeliveryError
from nudge.core.records import Email
from nudge.delivery.message import to_bytes
from nudge.delivery.smtp import SmtpTransport
from nudge.flows.parse import Limits, parse_record
from tests.events import add, identify, product, track
from tests.harness import Pipeline

LIMITS = Limits.from_config(EventsConfig(), now_ms=1_800_000_000_000)

HOSTILE = [
    "Evil:victim@example.com",
    "a\x00b@example.com",
    "victim@example.com(evil)@attacker.example",
    "a@b.c@example.com",
    "x@[127.0.0.1]",
    '"victim@example.com"@attacker.example',
    "victim@example.com, boss@example.com",
    "Victim <victim@example.com>",
    "victim@example.com\r\nBcc: all@example.com",
    "victim@127.0.0.1",
    "vic\u200btim@example.com",
    "victim\u202e@example.com",
    ".victim@example.com",
    "vic..tim@example.com",
    "victim@example..com",
    "victim@-example.com",
    "victim@example",
    "victim@",
    "@example.com",
]


def identify_raw(email: str) -> bytes:
    return orjson.dumps({"type": "identify", "userId": "c1", "timestamp": "2026-10-05T10:00:00Z",
                         "traits": {"email": email, "marketing_consent": True}})


@pytest.mark.parametrize("address", HOSTILE)
def test_hostile_addresses_are_dead_letters_at_parse_time(address: str) -> None:
    with pytest.raises(InputError) as info:
        parse_record(identify_raw(address), LIMITS)
    assert info.value.reason == "invalid_email"


@pytest.mark.parametrize(("given_", "kept"), [
    ("ann@example.com", "ann@example.com"),
    ("  Ann.Lee+shop@Example.COM ", "Ann.Lee+shop@example.com"),
    ("o'neil!#$%&*/=?^_`{|}~-@mail.example.co.uk", "o'neil!#$%&*/=?^_`{|}~-@mail.example.co.uk"),
    ("ann@bücher.example", "ann@xn--bcher-kva.example"),
    ("jörg@example.de", "jörg@example.de"),
])
def test_plain_addresses_are_kept_in_canonical_form(given_: str, kept: str) -> None:
    ev = parse_record(identify_raw(given_), LIMITS)
    assert ev.traits is not None and ev.traits.email == kept


def test_the_decision_log_never_says_sent_for_an_undeliverable_address() -> None:
    p = Pipeline(Config(shards=2))
    for i, address in enumerate(HOSTILE):
        p.feed([identify(f"h{i}", 0, email=address), add(f"h{i}", 1)])
    p.feed([track("Product Viewed", "z", 120, product("sku-2"))])  # event time moves on
    p.end()
    assert len(p.decisions) == len(HOSTILE)
    assert all(d.outcome != "sent" for d in p.decisions)
    assert [d.reason for d in p.dead] == ["invalid_email"] * len(HOSTILE)


def _email(to: str) -> Email:
    return Email(key="c1\x1fcart_abandonment\x1f1\x1f1", customer_id="c1",
                 trigger="cart_abandonment", episode=1, stage=1, due=1_791_000_000_000, to=to,
                 from_addr="Shop <shop@example.com>", subject="Your cart", preheader="",
                 html="<p>hi</p>", text="hi")


def test_a_transport_refuses_a_recipient_that_parse_would_not_accept() -> None:
    for address in HOSTILE:
        with pytest.raises(PermanentDeliveryError):
            to_bytes(_email(address))
        with pytest.raises(PermanentDeliveryError):
            SmtpTransport(SmtpConfig(host="127.0.0.1", port=9, tls="none")).send(_email(address))


# -- the hypothesis test: hostile pieces put together ----------------------------------------

PIECES = ["victim", "Evil", "a", "é", "bücher", "+tag", ".", "..", "-", "@", "@", "example.com",
          "attacker.example", "127.0.0.1", "[", "]", "(", ")", "<", ">", '"', ":", ";", ",",
          "\\", " ", "\t", "\r\n", "\x00", "\x7f", "\u200b", "\u202e", "\ufeff", "\u00a0",
          "xn--", "com", "'", "%", "!", "\u0301"]
addresses = st.one_of(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join),
                      st.text(max_size=40).map(lambda s: s + "@example.com"),
                      st.text(max_size=40))


class _Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[_Recorder, int]]:
    from aiosmtpd.controller import Controller

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = _Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


FORBIDDEN = set('"()<>[]:;,\\ \t\r\n\x00')


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(address=addresses)
def test_what_parse_accepts_is_exactly_what_to_and_rcpt_carry(
        address: str, smtp: tuple[_Recorder, int]) -> None:
    try:
        ev = parse_record(identify_raw(address), LIMITS)
    except InputError as exc:
        assert exc.reason in ("invalid_email", "field_too_long")
        return
    assert ev.traits is not None and ev.traits.email is not None
    kept = ev.traits.email
    assert canonical(kept) == kept
    assert kept.count("@") == 1 and not FORBIDDEN & set(kept)
    assert all(unicodedata.category(ch)[0] not in "CZ" for ch in kept)
    local, _, domain = kept.partition("@")
    assert domain.isascii() and all(label for label in domain.split("."))

    wire = to_bytes(_email(kept))
    msg = Parser(policy=policy.default).parsestr(wire.decode("utf-8"))
    (to,) = msg["To"].addresses
    assert (to.username, to.domain) == (local, domain)
    assert [line for line in wire.split(b"\r\n") if line.startswith(b"To:")] == \
        [b"To: " + kept.encode()]

    handler, port = smtp
    before = len(handler.envelopes)
    SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, tls="none")).send(_email(kept))
    rcpts, content = handler.envelopes[before]
    assert rcpts == [kept]
    assert b"\nTo: " + kept.encode() + b"\r\n" in content
