"""The catalog topic (`catalog.topic`) as a partitioned source: the events source's
partitions (resumable offsets, idle heartbeats in live mode), each record wrapped with its
key and timestamp (nudge/scoring/catalogfeed.py `envelope`), tombstones kept.

The topic is meant to be compacted with the product id as key: a new consumer then reads
the latest version of every product, and a tombstone (null value) removes one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from nudge.core.config import EventsConfig, KafkaConfig
from nudge.core.errors import SourceError
from nudge.kafka.source import KafkaEventSource, _KafkaPartition, list_partitions
from nudge.scoring.catalogfeed import envelope


def wrap(msg: Message) -> bytes:
    kind, ts = msg.timestamp()
    key = msg.key()
    return envelope(key if isinstance(key, bytes) else None,
                    None if kind == TIMESTAMP_NOT_AVAILABLE else ts, msg.value())


class KafkaCatalogSource(KafkaEventSource):
    """Catalog records from `topic`; `tail=False` reads to the end and stops."""

    def __init__(self, config: KafkaConfig, events: EventsConfig, topic: str, *,
                 tail: bool | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(dataclasses.replace(config, topic=topic), events, tail=tail,
                         clock=clock)

    def _partitions(self) -> list[int]:
        if self._parts is None:
            self._parts = list_partitions(self.config, config_key="catalog.topic")
        return self._parts

    def build_part(self, step_id: str, for_part: str,
                   resume_state: int | None) -> _KafkaPartition:
        topic, _, part = for_part.rpartition("/")
        if topic != self.config.topic:
            raise SourceError(f"step {step_id}: recovery state is for topic {topic!r}, "
                              f"catalog.topic is {self.config.topic!r}; use a new recovery.dir")
        return _KafkaPartition(self.config, self.events, int(part), len(self._partitions()),
                               resume_state, self.tail, self.clock, wrap)
