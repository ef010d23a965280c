"""A producer for a web service: a request's messages are acknowledged to its client only
after the broker acknowledged every one of them.

librdkafka calls delivery reports from `poll()`; one thread polls, and each group of messages
(one HTTP request) resolves a single callback once all its reports are in: one cross-thread
wake-up per request, not per message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from nudge.core.config import KafkaConfig
from nudge.kafka.client import producer_config

log = logging.getLogger("nudge.kafka.acked")

# (key, value, headers) of one message
Record = tuple[bytes, bytes, list[tuple[str, str | bytes | None]]]


class QueueFull(Exception):
    """The producer's local queue is full (the broker is slow or away): ask the client to
    retry later rather than block the service."""


class _Group:
    __slots__ = ("done", "error", "left", "lock")

    def __init__(self, n: int, done: Callable[[str | None], None]) -> None:
        self.left = n
        self.error: str | None = None
        self.done = done
        self.lock = threading.Lock()

    def report(self, err: KafkaError | None, _msg: Message | None) -> None:
        self.settle(1, None if err is None else err.str())

    def settle(self, n: int, error: str | None) -> None:
        with self.lock:
            if error is not None and self.error is None:
                self.error = error
            self.left -= n
            last = self.left == 0
        if last:
            self.done(self.error)


class AckedProducer:
    """Idempotent, acks=all (nudge/kafka/client.py); `send` queues a group and calls
    `done(None)` or `done(error text)` from the polling thread once all are reported."""

    def __init__(self, config: KafkaConfig, *, linger_ms: int = 2) -> None:
        conf = producer_config(config)
        conf.setdefault("linger.ms", linger_ms)
        conf["linger.ms"] = min(int(conf["linger.ms"]), linger_ms)
        self._producer = Producer(conf)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-acks", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def send(self, topic: str, records: Sequence[Record],
             done: Callable[[str | None], None]) -> None:
        """Queue `records`; raises QueueFull if the local queue cannot take them all (those
        already queued still report to `done`, which then names the failure)."""
        if not records:
            done(None)
            return
        group = _Group(len(records), done)
        produce = self._producer.produce
        for i, (key, value, headers) in enumerate(records):
            try:
                produce(topic, value, key, headers=headers, on_delivery=group.report)
            except BufferError:
                # the rest never reach the broker: count them as failed now
                missing = len(records) - i
                group.settle(missing, "the producer's queue is full")
                raise QueueFull(f"{missing} of {len(records)} messages not queued") from None

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` s for every queued message's report; the number left."""
        left = int(self._producer.flush(timeout))
        if left:
            log.error("kafka: %d accepted messages not acknowledged within %.0f s", left, timeout)
        return left

    def close(self, timeout: float) -> int:
        left = self.flush(timeout)
        self._stop.set()
        self._thread.join(5)
        return left

    def topics(self, timeout: float = 5.0) -> Any:
        """The cluster's topic metadata (readiness: the broker answers)."""
        return self._producer.list_topics(timeout=timeout).topics
