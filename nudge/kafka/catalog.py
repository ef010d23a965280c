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
from nudge.kafka.source import KafkaEventSource
from nudge.scoring.catalogfeed import envelope


def wrap(msg: Message) -> bytes:
    kind, ts = msg.timestamp()
    key = msg.key()
    return envelope(key if isinstance(key, bytes) else None,
                    None if kind == TIMESTAMP_NOT_AVAILABLE else ts, msg.value())


class KafkaCatalogSource(KafkaEventSource):
    """Catalog records from `topic`; `tail=False` reads to the end and stops."""

    topic_key = "catalog.topic"

    def __init__(self, config: KafkaConfig, events: EventsConfig, topic: str, *,
                 tail: bool | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(dataclasses.replace(config, topic=topic), events, tail=tail,
                         clock=clock)
        self.wrap = wrap
