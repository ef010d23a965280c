"""Transports against real servers: outbox files, an ESP over HTTP with faults, SMTP; the
ledger makes every send happen once."""

from __future__ import annotations

import dataclasses
from email import policy
from email.parser import BytesParser
from email.utils import formataddr
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.core.config import Config
from nudge.core.deliveryconfig import EspConfig, SmtpConfig
from nudge.core.errors import ConfigError
from nudge.core.events import Product
from nudge.core.records import Decision, Email, EmailContext
from nudge.delivery.engine import Deliverer
from nudge.delivery.esp import EspTransport, payload, retry_after
from nudge.delivery.ledger import Ledger, LedgerError
from nudge.delivery.message import to_bytes
from nudge.delivery.outbox import OutboxTransport
from nudge.delivery.retry import RetryPolicy
from nudge.delivery.smtp import SmtpTransport
from nudge.templates.render import Renderer
from tests.servers import esp_server, smtp_server

POLICY = RetryPolicy(max_attempts=4, base_ms=10, max_ms=50)


def email(n: int = 1) -> Email:
    ctx = EmailContext("ann@example.com", "Ann", "Lee", "Europe/Berlin",
                       (Product("sku-1", "Linen Shirt", 49.0, 1, "apparel",
                                 "https://shop.example/img/1.jpg",
                                 "https://shop.example/p/sku-1"),), 49.0)
    d = Decision(f"cust-{n}", "cart_abandonment", 1, 1, 1790848800000 + n, "sent", None, ctx)
    return Renderer(Config(), strict=True).render(d)


class Recorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def test_outbox_writes_a_parseable_multipart_message(tmp_path: Path) -> None:
    t = OutboxTransport(tmp_path)
    path = Path(t.send(email()))
    msg = BytesParser(policy=policy.default).parse(path.open("rb"))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["To"] == "ann@example.com"
    assert "Ann" in msg["Subject"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Unsubscribe"].startswith("<https://") and "mailto:" in msg["List-Unsubscribe"]
    assert msg["Date"] and msg["Message-ID"].endswith("@shop.example>")
    assert t.send(email()) == str(path)  # same decision, same file
    t.close()
    index = (tmp_path / "index.html").read_text()
    assert path.name in index and "Nudge outbox: 1 emails" in index


def test_esp_payload_shape_and_success() -> None:
    with esp_server(fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url), api_key="k")
        assert t.send(email()) == "msg-1"
        body = esp.requests[0]["body"]
        assert esp.requests[0]["auth"] == "Bearer k"
        assert body["personalizations"] == [{"to": [{"email": "ann@example.com"}]}]
        assert body["from"] == {"email": "hello@shop.example", "name": "Nudge Demo Shop"}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert body["categories"] == ["cart_abandonment", "stage-1"]
        assert body == payload(email()) | {"custom_args": body["custom_args"]}


def test_esp_missing_api_key_names_the_config_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUDGE_ESP_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"delivery\.esp\.api_key_env"):
        EspTransport(EspConfig())


def test_esp_transient_faults_are_retried_honouring_retry_after(tmp_path: Path) -> None:
    with esp_server(script=["429", "500", "reset", "503", "202"], fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url, timeout=1000), api_key="k")
        sleep = Recorder()
        d = Deliverer(t, Ledger(tmp_path / "l"), RetryPolicy(5, 10, 50), sleep=sleep)
        assert d.deliver([email()]) == []
        assert d.stats["sent"] == 1 and d.stats["attempts"] == 5
        assert sleep.delays[0] >= 1.0  # the 429's Retry-After: 1
        assert all(x <= 0.05 for x in sleep.delays[1:])
        assert len(esp.accepted) == 1


def test_esp_timeout_is_transient(tmp_path: Path) -> None:
    with esp_server(script=["slow", "202"], slow_seconds=1.5, fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url, timeout=300), api_key="k")
        d = Deliverer(t, Ledger(tmp_path / "l"), POLICY, sleep=Recorder())
        assert d.deliver([email()]) == []
        assert [r["answer"] for r in esp.requests] == ["slow", "202"]


def test_esp_permanent_4xx_is_dead_lettered_at_once_with_the_response(tmp_path: Path) -> None:
    with esp_server(script=["400"], fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url), api_key="k")
        ledger = Ledger(tmp_path / "l")
        d = Deliverer(t, ledger, POLICY, sleep=Recorder())
        dead = d.deliver([email()])
        assert len(esp.requests) == 1
        assert [x.reason for x in dead] == ["permanent_failure"]
        assert "status 400" in dead[0].detail and "errors" in dead[0].detail
        assert ledger.get(email().key)["outcome"] == "dead_lettered"  # type: ignore[index]
        assert d.deliver([email()]) == []  # not retried forever after a resume
        assert len(esp.requests) == 1


def test_esp_retries_exhausted_are_dead_lettered_with_the_last_error(tmp_path: Path) -> None:
    with esp_server(script=["500"] * 4, fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url), api_key="k")
        d = Deliverer(t, Ledger(tmp_path / "l"), POLICY, sleep=Recorder())
        dead = d.deliver([email()])
        assert len(esp.requests) == 4
        assert dead[0].reason == "retries_exhausted" and "500" in dead[0].detail


def test_every_email_accepted_exactly_once_under_random_faults(tmp_path: Path) -> None:
    with esp_server(seed=3, slow_seconds=0.5) as esp:  # the default: 30% faults
        t = EspTransport(EspConfig(url=esp.url, timeout=200), api_key="k")
        d = Deliverer(t, Ledger(tmp_path / "l"), RetryPolicy(8, 1, 5), sleep=Recorder())
        batch = [email(n) for n in range(60)]
        dead = d.deliver(batch)
        d.deliver(batch)  # a replay after a resume: all in the ledger
        accepted_keys = [a["custom_args"]["nudge_key"] for a in esp.accepted]
        assert len(accepted_keys) == len(set(accepted_keys)) == 60 - len(dead)
        assert d.stats["skipped_duplicate"] == 60


def test_retry_after_parsing() -> None:
    assert retry_after("7", 0) == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10.0
    assert retry_after("soon", 0) is None


def test_smtp_delivers_and_classifies_replies(tmp_path: Path) -> None:
    with smtp_server(script=["451 4.3.0 try later"]) as (sink, port):
        t = SmtpTransport(SmtpConfig(host="127.0.0.1", port=port, tls="none"))
        d = Deliverer(t, Ledger(tmp_path / "l"), POLICY, sleep=Recorder())
        assert d.deliver([email(1)]) == []  # 451, then accepted on the retry
        assert d.stats["attempts"] == 2
        sink.script.append("550 5.1.1 no such user")
        dead = d.deliver([email(2)])
        t.close()
    assert [x.reason for x in dead] == ["permanent_failure"] and "550" in dead[0].detail
    assert len(sink.messages) == 1
    msg = BytesParser(policy=policy.default).parsebytes(sink.messages[0])
    assert msg["To"] == "ann@example.com" and msg.get_content_type() == "multipart/alternative"


def test_ledger_persists_and_erases_a_customer(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l")
    ledger.record("a\x1fcart\x1f1\x1f1", outcome="sent", transport="t", receipt="r", attempts=1)
    ledger.record("ab\x1fcart\x1f1\x1f1", outcome="sent", transport="t", receipt="r", attempts=1)
    with pytest.raises(LedgerError, match="cannot open"):
        Ledger(tmp_path / "l")  # one writer only
    ledger.close()
    ledger = Ledger(tmp_path / "l")
    assert "a\x1fcart\x1f1\x1f1" in ledger and ledger.count() == 2
    assert ledger.erase_customer("a") == 1
    assert "ab\x1fcart\x1f1\x1f1" in ledger and ledger.count() == 1


_header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)


_BASE = email()


@settings(max_examples=200, deadline=None)
@given(subject=_header_text, name=_header_text, text=st.text(max_size=400),
       html=st.text(max_size=400), unsub=_header_text)
def test_wire_form_parses_back_to_the_same_fields(subject: str, name: str, text: str,
                                                  html: str, unsub: str) -> None:
    e = dataclasses.replace(_BASE, subject=subject, text=text, html=html,
                            from_addr=formataddr((name, "shop@shop.example")),
                            headers=(("List-Unsubscribe", unsub),))
    raw = to_bytes(e)
    assert raw == to_bytes(e)  # deterministic
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines) and b"\n" not in raw.replace(b"\r\n", b"")
    msg = BytesParser(policy=policy.strict).parsebytes(raw)
    flat = " ".join(subject.replace("\r", " ").replace("\n", " ").split())
    assert " ".join(str(msg["Subject"]).split()) == flat
    assert msg["From"].addresses[0].addr_spec == "shop@shop.example"
    assert " ".join(msg["From"].addresses[0].display_name.split()) == \
        " ".join(name.replace("\r", " ").replace("\n", " ").split())
    assert len(msg.keys()) == len(set(msg.keys()))  # nothing smuggled a header in
    plain, rich = msg.iter_parts()
    assert plain.get_content().replace("\r\n", "\n") == _body(text)
    assert rich.get_content().replace("\r\n", "\n") == _body(html)


def _body(text: str) -> str:
    norm = text.replace("\r\n", "\n").replace("\r", "\n")
    return norm if norm.endswith("\n") else norm + "\n"


def _esp_config(url: str, tmp_path: Path, **delivery: object) -> Config:
    base = Config()
    return dataclasses.replace(base, delivery=dataclasses.replace(
        base.delivery, transport="esp", ledger_dir=str(tmp_path / "ledger"),
        esp=EspConfig(url=url, timeout=5000, max_attempts=5, backoff_base=10, backoff_max=50),
        **delivery))


def test_sender_pool_bounds_concurrency_and_the_waiting_queue(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from nudge.delivery.senders import sender_for

    monkeypatch.setenv("NUDGE_ESP_API_KEY", "k")
    with esp_server(fault_rate=0.0, delay=0.01, together=3) as esp:
        pool = sender_for(_esp_config(esp.url, tmp_path, concurrency=3, queue_size=4))
        waiting: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                waiting.append(pool.queue.qsize())  # type: ignore[union-attr]
                stop.wait(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for n in range(30):
            pool.submit(email(n))  # blocks while 4 wait: backpressure
        dead = pool.close()
        stop.set()
        watcher.join()
    assert dead == [] and len(esp.accepted) == 30
    assert not esp.gate.broken  # the first 3 requests were at the ESP at once: they all send
    assert esp.max_in_flight <= 3  # never more than `concurrency` requests at the ESP
    assert max(waiting) <= 4  # never more than `queue_size` emails waiting in memory


def test_rate_limiter_spaces_sends_after_one_seconds_burst() -> None:
    from nudge.delivery.engine import RateLimiter

    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(30):
        limiter.acquire()
    # 10 at once (one second's worth), then one every 0.1 s: 20 more take 2 seconds
    assert now[0] == pytest.approx(2.0, abs=1e-6)
    assert RateLimiter(0, clock=lambda: 0.0, sleep=sleep).acquire() is None  # 0: no limit


def test_a_stalled_esp_never_blocks_the_snapshot_and_nothing_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ESP stops answering: the sink's snapshot returns at once with the emails still in
    flight; a run resumed from that snapshot sends them, and what was accepted meanwhile is
    not sent twice."""
    import threading

    from nudge.flows.deliver import _DeliveryPartition

    monkeypatch.setenv("NUDGE_ESP_API_KEY", "k")
    with esp_server(fault_rate=0.0) as esp:
        cfg = _esp_config(esp.url, tmp_path, concurrency=2, queue_size=20)
        esp.hold.clear()  # the ESP stalls
        first = _DeliveryPartition(cfg, tmp_path / "dl.jsonl", None)
        first.write_batch([email(n) for n in range(10)])
        result: list[dict[str, Any]] = []
        snap = threading.Thread(target=lambda: result.append(first.snapshot()))
        snap.start()
        snap.join(timeout=60)  # it must not wait for the held ESP at all
        assert result, "the snapshot waited for the ESP"
        in_flight = result[0]["in_flight"]
        assert sorted(e.key for e in in_flight) == sorted(email(n).key for n in range(10))
        esp.hold.set()  # the ESP is back: the first run finishes what it had started ...
        first.close()
        assert len(esp.accepted) == 10
        requests = len(esp.requests)
        second = _DeliveryPartition(cfg, tmp_path / "dl.jsonl", result[0])  # ... a resume
        second.close()
        assert len(esp.requests) == requests  # all in the ledger: nothing sent again
        assert len(esp.accepted) == 10


@pytest.mark.parametrize("from_addr, addr_spec", [
    ("shop+news@mail.example.com", "shop+news@mail.example.com"),  # the fast path
    ("Ann Lee <ann@example.com>", "ann@example.com"),
    ('"Lee, Ann" <ann@example.com>', "ann@example.com"),
    ("Ännä <anna@example.com>", "anna@example.com"),
])
def test_sender_forms_parse_back_to_the_address(from_addr: str, addr_spec: str) -> None:
    # The recipient is always a bare address (tests/test_addresses.py); the sender, from
    # the config, may carry a display name.
    msg = BytesParser(policy=policy.strict).parsebytes(
        to_bytes(dataclasses.replace(_BASE, from_addr=from_addr)))
    assert msg["From"].addresses[0].addr_spec == addr_spec
    assert msg["To"].addresses[0].addr_spec == _BASE.to
