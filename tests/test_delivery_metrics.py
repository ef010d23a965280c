"""Delivery metrics Prometheus can alert on: sent, failed by reason, retries, in flight, and
the due-to-sent latency per transport, from real sends to the ESP stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from nudge.delivery.engine import Deliverer
from nudge.delivery.ledger import Ledger
from nudge.delivery.retry import RetryPolicy
from tests.servers import esp_server
from tests.test_delivery import Recorder, _esp_config, email


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_sent_failed_retries_and_latency_are_counted(tmp_path: Path) -> None:
    from nudge.delivery.esp import EspTransport

    before = {
        "sent": _value("nudge_emails_sent_total", transport="esp", trigger="cart_abandonment"),
        "retries": _value("nudge_send_retries_total", transport="esp"),
        "permanent": _value("nudge_emails_failed_total", transport="esp",
                            reason="permanent_failure"),
        "exhausted": _value("nudge_emails_failed_total", transport="esp",
                            reason="retries_exhausted"),
        "latency": _value("nudge_due_to_sent_seconds_count", transport="esp"),
    }
    from nudge.core.deliveryconfig import EspConfig

    with esp_server(script=["500", "202", "400", "503", "503", "503"], fault_rate=0.0) as esp:
        t = EspTransport(EspConfig(url=esp.url, timeout=2000), api_key="k")
        d = Deliverer(t, Ledger(tmp_path / "l"), RetryPolicy(3, 10, 50), sleep=Recorder())
        dead = d.deliver([email(1), email(2), email(3)])
    assert [x.reason for x in dead] == ["permanent_failure", "retries_exhausted"]
    assert _value("nudge_emails_sent_total", transport="esp",
                  trigger="cart_abandonment") == before["sent"] + 1
    assert _value("nudge_send_retries_total", transport="esp") == before["retries"] + 1 + 2
    assert _value("nudge_emails_failed_total", transport="esp",
                  reason="permanent_failure") == before["permanent"] + 1
    assert _value("nudge_emails_failed_total", transport="esp",
                  reason="retries_exhausted") == before["exhausted"] + 1
    assert _value("nudge_due_to_sent_seconds_count", transport="esp") == before["latency"] + 1


def test_in_flight_rises_while_the_pool_holds_emails_and_returns_to_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nudge.delivery.senders import sender_for

    monkeypatch.setenv("NUDGE_ESP_API_KEY", "k")
    with esp_server(fault_rate=0.0, together=2) as esp:
        esp.hold.clear()  # the ESP stops answering: submitted emails stay in flight
        pool = sender_for(_esp_config(esp.url, tmp_path, concurrency=2, queue_size=4))
        base = _value("nudge_emails_in_flight", transport="esp")
        for n in range(5):
            pool.submit(email(n))
        assert _value("nudge_emails_in_flight", transport="esp") == base + 5
        esp.hold.set()
        assert pool.close() == []  # type: ignore[union-attr]
    assert _value("nudge_emails_in_flight", transport="esp") == base
