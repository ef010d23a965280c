"""delivery.guarantee against an ESP that does not de-duplicate (like SendGrid, SES, Mailgun):
at least once re-sends an email whose fate a crash made unknown (a copy possible, none lost);
at most once reports it as a dead letter `in_doubt` and never sends it twice."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from nudge.core.config import load_text
from nudge.core.deliveryconfig import EspConfig, SmtpConfig
from nudge.core.errors import ConfigError, TransientDeliveryError
from nudge.core.ids import log_id
from nudge.core.records import Email
from nudge.delivery.engine import Deliverer, mark_reported
from nudge.delivery.esp import EspTransport
from nudge.delivery.ledger import Ledger
from nudge.delivery.retry import RetryPolicy
from nudge.delivery.smtp import SmtpTransport
from tests.servers import EspServer, esp_server, smtp_server
from tests.test_delivery import Recorder, email

POLICY = RetryPolicy(max_attempts=4, base_ms=1, max_ms=5)


class Killed(BaseException):
    """The process dying mid-send: after the ESP accepted, before the answer was used."""


class DiesAfterAccepting:
    """Sends through the real transport, then dies before its caller hears the answer."""

    name = "esp"

    def __init__(self, inner: EspTransport) -> None:
        self.inner = inner

    def send(self, email: Email) -> str:
        self.inner.send(email)
        raise Killed

    def close(self) -> None:
        self.inner.close()


def esp(server: EspServer, **kw: object) -> EspTransport:
    return EspTransport(EspConfig(url=server.url, **kw), api_key="k")  # type: ignore[arg-type]


@pytest.mark.parametrize("guarantee", ["at_least_once", "at_most_once"])
def test_a_crash_between_acceptance_and_the_ledger(tmp_path: Path, guarantee: str) -> None:
    once = guarantee == "at_most_once"
    e = email(1)
    with esp_server(fault_rate=0.0, dedupe=False) as server:
        ledger = Ledger(tmp_path / "ledger")
        crashed = Deliverer(DiesAfterAccepting(esp(server)), ledger, POLICY, at_most_once=once)
        with pytest.raises(Killed):
            crashed.deliver([e])
        ledger.close()
        assert server.copies == {next(iter(server.copies)): 1}  # the ESP has it
        # the resumed run: the email was in flight at the snapshot and is submitted again
        ledger = Ledger(tmp_path / "ledger")
        resumed = Deliverer(esp(server), ledger, POLICY, at_most_once=once)
        dead = resumed.deliver([e])
        # a crash before the dead letter was written: the next run reports it again
        assert [d.reason for d in resumed.deliver([e])] == (["in_doubt"] if once else [])
        mark_reported(ledger, dead)  # what the sink does once it wrote the dead letters
        again = resumed.deliver([e])  # reported, never sent
        entry = ledger.get(e.key)
        ledger.close()
    if once:
        assert list(server.copies.values()) == [1]  # no duplicate
        assert [d.reason for d in dead] == ["in_doubt"] and again == []
        raw = orjson.loads(dead[0].raw)
        assert raw["key"] == e.key and raw["customer"] == log_id(e.customer_id)
        assert raw["message_key"] == dict(e.headers)["X-Nudge-Key"]
        assert e.customer_id not in dead[0].detail
        assert "not sent again (delivery.guarantee = at_most_once)" in dead[0].detail
        assert entry is not None and entry["outcome"] == "in_doubt"
        assert resumed.stats["in_doubt"] == 2 and resumed.stats["skipped_duplicate"] == 1
    else:
        assert list(server.copies.values()) == [2]  # none lost; this ESP delivers the copy
        assert dead == [] and again == []
        assert entry is not None and entry["outcome"] == "sent"
        assert resumed.stats["sent"] == 1


@pytest.mark.parametrize("guarantee", ["at_least_once", "at_most_once"])
def test_a_timeout_after_the_request_left(tmp_path: Path, guarantee: str) -> None:
    """The ESP accepts, then answers after the client gave up: at least once retries (and
    this ESP delivers twice); at most once does not retry and reports the email in doubt."""
    once = guarantee == "at_most_once"
    with esp_server(script=["slow"], fault_rate=0.0, dedupe=False, slow_seconds=1.0) as server:
        d = Deliverer(esp(server, timeout=200), Ledger(tmp_path / "l"), POLICY,
                      sleep=Recorder(), at_most_once=once)
        dead = d.deliver([email(1)])
        # wait for the late answer's acceptance to be counted before reading the copies
        for _ in range(200):
            if server.copies and sum(server.copies.values()) >= (1 if once else 2):
                break
            threading.Event().wait(0.02)
    if once:
        assert [x.reason for x in dead] == ["in_doubt"] and "timed out" in dead[0].detail
        assert len(server.requests) == 1 and list(server.copies.values()) == [1]
    else:
        assert dead == [] and len(server.requests) == 2
        assert list(server.copies.values()) == [2]


def test_at_most_once_still_retries_what_never_left(tmp_path: Path) -> None:
    """A refused connection or a 503 leaves nothing at the ESP: retried in either mode."""
    with esp_server(script=["503", "429", "500"], fault_rate=0.0, dedupe=False) as server:
        d = Deliverer(esp(server), Ledger(tmp_path / "l"), POLICY, sleep=Recorder(),
                      at_most_once=True)
        assert d.deliver([email(1)]) == []
        assert len(server.requests) == 4 and list(server.copies.values()) == [1]
    closed = esp_server(fault_rate=0.0)
    with closed as gone:
        url = gone.url
    d = Deliverer(EspTransport(EspConfig(url=url), api_key="k"), Ledger(tmp_path / "m"),
                  POLICY, sleep=Recorder(), at_most_once=True)
    dead = d.deliver([email(2)])
    assert [x.reason for x in dead] == ["retries_exhausted"] and d.stats["attempts"] == 4


def test_smtp_connection_lost_after_data_is_in_doubt(tmp_path: Path) -> None:
    """The server takes the message and the connection drops before its reply arrives."""
    with smtp_server() as (sink, port):
        original = sink.handle_DATA

        async def take_and_hang_up(server, session, envelope):  # type: ignore[no-untyped-def]
            await original(server, session, envelope)
            server.transport.close()
            return "250 never heard"

        sink.handle_DATA = take_and_hang_up  # type: ignore[method-assign]
        t = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, tls="none"))
        with pytest.raises(TransientDeliveryError) as err:
            t.send(email(1))
        assert err.value.maybe_sent
        d = Deliverer(SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, tls="none")),
                      Ledger(tmp_path / "l"), POLICY, sleep=Recorder(), at_most_once=True)
        dead = d.deliver([email(2)])
    assert [x.reason for x in dead] == ["in_doubt"]
    assert len(sink.messages) == 2  # each taken once, the second never sent again


def test_guarantee_is_a_checked_choice() -> None:
    assert load_text("").delivery.guarantee == "at_least_once"
    assert load_text('[delivery]\nguarantee = "at_most_once"\n').delivery.guarantee == \
        "at_most_once"
    with pytest.raises(ConfigError, match=r"delivery\.guarantee: must be one of "
                                          r"at_least_once, at_most_once"):
        load_text('[delivery]\nguarantee = "exactly_once"\n')
