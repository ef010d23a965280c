"""The pipelined Kafka sender on the real broker: each email once on the topic, the ledger
written from delivery reports, refusals and an unreachable broker dead-lettered."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from nudge.core.config import Config
from nudge.delivery.ledger import Ledger
from nudge.delivery.pipelined import PipelinedSender
from nudge.delivery.retry import RetryPolicy
from nudge.kafka.producer import KafkaTransport
from tests.broker import Broker, free_port
from tests.test_delivery import email

pytestmark = pytest.mark.broker


def _sender(bootstrap: str, topic: str, ledger: Path, attempts: int = 3,
            at_most_once: bool = False, **client: str) -> PipelinedSender:
    base = Config()
    config = dataclasses.replace(base, kafka=dataclasses.replace(
        base.kafka, brokers=(bootstrap,), email_topic=topic,
        client_config=tuple(client.items())))
    return PipelinedSender(KafkaTransport(config), Ledger(ledger), RetryPolicy(attempts, 1, 5),
                           at_most_once=at_most_once)


def test_each_email_reaches_the_topic_once_and_is_ledgered(broker: Broker,
                                                            tmp_path: Path) -> None:
    topic = broker.create_topic("pipelined-emails", partitions=2)
    emails = [email(n) for n in range(40)]
    sender = _sender(broker.bootstrap, topic, tmp_path / "ledger")
    for e in emails:
        sender.submit(e)
    sender.submit(emails[0])  # re-emitted while still in flight (or already ledgered)
    assert sender.close() == []
    assert sender.stats["sent"] == 40 and sender.stats["skipped_duplicate"] == 1

    records = broker.consume_all(topic)
    assert sorted(orjson.loads(v)["key"] for *_, v, _ in records) == sorted(e.key for e in emails)
    ledger = Ledger(tmp_path / "ledger")
    where = {orjson.loads(v)["key"]: f"{topic}[{p}]@{o}" for p, o, _, v, _ in records}
    for e in emails:
        entry = ledger.get(e.key)
        assert entry is not None and entry["outcome"] == "sent"
        assert entry["receipt"] == where[e.key]  # the broker's own partition and offset
    ledger.close()

    again = _sender(broker.bootstrap, topic, tmp_path / "ledger")
    for e in emails:
        again.submit(e)
    assert again.close() == [] and again.stats["sent"] == 0
    assert len(broker.consume_all(topic)) == 40


def test_an_email_the_topic_cannot_take_is_dead_lettered(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("pipelined-oversize")
    huge = dataclasses.replace(email(1), html="<p>" + "x" * 1_000_000 + "</p>")
    sender = _sender(broker.bootstrap, topic, tmp_path / "ledger")
    sender.submit(huge)
    sender.submit(email(2))
    dead = sender.close()
    assert [(d.stage, d.reason) for d in dead] == [("deliver", "permanent_failure")]
    assert orjson.loads(dead[0].raw)["key"] == huge.key and "exceeds" in dead[0].detail
    assert [orjson.loads(v)["key"] for *_, v, _ in broker.consume_all(topic)] == [email(2).key]
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.get(huge.key)["outcome"] == "dead_lettered"  # type: ignore[index]
    ledger.close()


def test_unreachable_broker_is_retried_then_dead_lettered(tmp_path: Path) -> None:
    sender = _sender(f"127.0.0.1:{free_port()}", "nowhere", tmp_path / "ledger", attempts=2,
                     **{"message.timeout.ms": "300"})
    e = email(1)
    sender.submit(e)
    assert [x.key for x in sender.pending()] == [e.key]  # kept for the snapshot meanwhile
    dead = sender.close()
    assert [d.reason for d in dead] == ["retries_exhausted"]
    assert "kafka delivery to nowhere" in dead[0].detail
    assert sender.stats == {"sent": 0, "skipped_duplicate": 0, "dead_lettered": 1, "attempts": 2,
                            "in_doubt": 0, "resent_in_doubt": 0}
    assert sender.pending() == []


def test_at_most_once_reports_a_failed_delivery_report_in_doubt(tmp_path: Path) -> None:
    """A report that failed (here: the message timed out) may hide a write: not produced
    again, reported in_doubt; after a crash, an attempt without a report is the same."""
    sender = _sender(f"127.0.0.1:{free_port()}", "nowhere", tmp_path / "ledger", attempts=3,
                     at_most_once=True, **{"message.timeout.ms": "300"})
    e = email(1)
    sender.submit(e)
    dead = sender.close()
    assert [d.reason for d in dead] == ["in_doubt"] and sender.stats["attempts"] == 1
    ledger = Ledger(tmp_path / "ledger")
    assert ledger.get(e.key)["outcome"] == "attempting"  # type: ignore[index]
    ledger.close()
    again = _sender("127.0.0.1:1", "nowhere", tmp_path / "ledger", at_most_once=True)
    again.submit(e)  # a resumed run: the attempt has no outcome
    assert [d.reason for d in again.take_dead()] == ["in_doubt"]
    assert again.stats["attempts"] == 0
    again.close()
