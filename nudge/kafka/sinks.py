"""Bytewax sinks onto Kafka topics: JSON lines (decisions, segments, outcomes) and dead letters.

Sinks are at-least-once: each batch is flushed before Bytewax moves on, and a resume may
repeat what was written after the last snapshot. Consumers de-duplicate on the decision's
(customer_id, trigger, episode, stage) or the dead letter's source position.
"""

from __future__ import annotations

from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from nudge.core.config import KafkaConfig
from nudge.core.deadletter import DeadLetter
from nudge.kafka.producer import KafkaProducerClient


class _LinesPartition(StatelessSinkPartition[Any]):
    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.client = KafkaProducerClient(config)
        self.topic = topic

    def write_batch(self, items: list[Any]) -> None:
        for item in items:
            line = item if isinstance(item, bytes) else str(item).encode()
            self.client.produce(self.topic, None, line)
        self.client.flush()

    def close(self) -> None:
        self.client.flush()


class KafkaLinesSink(DynamicSink[Any]):
    """Items are JSON lines (str or bytes), one message each."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.config = config
        self.topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LinesPartition:
        return _LinesPartition(self.config, self.topic)


def dead_letter_headers(d: DeadLetter) -> list[tuple[str, str | bytes | None]]:
    """Kafka Connect's DLQ header names, so existing DLQ tooling reads them."""
    pos = d.position
    return [
        ("__connect.errors.topic", (pos.source if pos else "").encode()),
        ("__connect.errors.partition", str(pos.partition if pos else -1).encode()),
        ("__connect.errors.offset", str(pos.offset if pos else -1).encode()),
        ("__connect.errors.exception.class.name", d.reason.encode()),
        ("__connect.errors.exception.message", d.detail.encode()),
        ("nudge.errors.stage", d.stage.encode()),
    ]


class DeadLetterWriter:
    """Dead letters onto a topic: the original bytes as the value, the rest in headers.
    `write` returns once the broker acknowledged all of them."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.client = KafkaProducerClient(config)
        self.topic = topic

    def write(self, items: list[DeadLetter]) -> None:
        for d in items:
            self.client.produce(self.topic, None, d.raw, dead_letter_headers(d))
        self.client.flush()


class _DeadLetterPartition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.writer = DeadLetterWriter(config, topic)

    def write_batch(self, items: list[DeadLetter]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.client.flush()


class DeadLetterTopicSink(DynamicSink[DeadLetter]):
    """The original bytes as the value; where they came from and why, in the headers."""

    def __init__(self, config: KafkaConfig, topic: str) -> None:
        self.config = config
        self.topic = topic

    def build(self, step_id: str, worker_index: int,
              worker_count: int) -> _DeadLetterPartition:
        return _DeadLetterPartition(self.config, self.topic)
