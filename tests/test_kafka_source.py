"""The Kafka source on the real broker: where a run starts, and how a bounded replay ends.

A new run starts at offset 0 (nudge/kafka/source.py: librdkafka resolves a logical offset only
~0.5 s after connecting). A log whose start retention moved past 0 answers that fetch out
of range and auto.offset.reset=earliest takes over; the test broker cannot trim a log (it
has no DeleteRecords), so that case is Kafka's documented behaviour, not tested here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from nudge.core import config as config_mod
from nudge.kafka.source import _KafkaPartition
from tests.broker import Broker
from tests.events import view
from tests.flowtools import write_config

pytestmark = pytest.mark.broker


def read_bounded(part: _KafkaPartition, timeout: float = 30) -> tuple[list[int], bool]:
    """Every (offset) a bounded partition returns, and whether its last chunk was final."""
    offsets: list[int] = []
    final = False
    deadline = time.monotonic() + timeout
    while not final and time.monotonic() < deadline:
        for _, chunk in part.next_batch():
            offsets.extend(offset for offset, _ in chunk.records)
            final = chunk.final
    return offsets, final


def source(broker: Broker, tmp_path: Path, topic: str, resume: Any = None
           ) -> _KafkaPartition:
    conf = write_config(tmp_path / "nudge.toml", tmp_path,
                        kafka={"brokers": [broker.bootstrap], "topic": topic})
    cfg = config_mod.load(str(conf))
    return _KafkaPartition(cfg.kafka, cfg.events, 0, 1, resume, False, time.time)


def records(n: int) -> list[tuple[bytes | None, bytes]]:
    return [(b"c1", view("c1", i, pid=f"sku-{i}")) for i in range(n)]


def test_a_new_run_reads_every_record_once_and_ends(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("source-from-zero")
    broker.produce(topic, records(25))
    part = source(broker, tmp_path, topic)
    try:
        offsets, final = read_bounded(part)
        assert final and offsets == list(range(25))
        # a resumed run starts after the last record
        assert part.snapshot() == {"format": 2, "offset": 25}
    finally:
        part.close()


def test_a_resumed_run_starts_at_its_snapshot(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("source-resumed")
    broker.produce(topic, records(12))
    part = source(broker, tmp_path, topic, resume={"format": 2, "offset": 7})
    try:
        offsets, final = read_bounded(part)
        assert final and offsets == [7, 8, 9, 10, 11]
    finally:
        part.close()
