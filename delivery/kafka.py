"""Kafka on the producing side (confluent-kafka): the email transport and the topic sinks
for the decision log and dead letters. The only module that imports it for producing.

Sinks are at-least-once: each batch is flushed before Bytewax moves on, and a resume may
repeat what was written after the last snapshot. Consumers de-duplicate on the decision's
(customer_id, trigger, episode, stage) or the dead letter's source position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from nudge.config import Config, KafkaConfig
from nudge.errors import PermanentDeliveryError, TransientDeliveryError
from nudge.records import DeadLetter, Email
from sources.kafka import LibrdkafkaLog


class KafkaProducerClient:
    def __init__(self, config: KafkaConfig) -> None:
        conf: dict[str, Any] = {
            "bootstrap.servers": ",".join(config.brokers),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "logger": LibrdkafkaLog(),  # its lines through Python logging, as the source's
        }
        conf.update(dict(config.client_config))
        self._producer = Producer(conf)
        self._errors: list[str] = []
        self._last: Message | None = None

    def _report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(err.str())
        else:
            self._last = msg

    def produce(self, topic: str, key: bytes | None, value: bytes,
                headers: list[tuple[str, str | bytes | None]] | None = None,
                partition: int | None = None, on_delivery: Any = None) -> None:
        """Queue one message; `partition` None lets the partitioner pick by key. Its
        delivery report goes to `on_delivery(err, msg)` if given, else to `flush()`."""
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers,
                                       on_delivery=on_delivery or self._report, **extra)
                return
            except BufferError:
                self._producer.poll(0.1)  # the local queue is full: let it drain
            except KafkaException as exc:
                raise TransientDeliveryError(f"kafka produce to {topic}: {exc}") from None

    def flush(self, timeout: float = 30.0) -> Message | None:
        """Wait for every delivery report; raise if any failed or some are still pending."""
        left = self._producer.flush(timeout)
        errors, self._errors = self._errors, []
        if errors:
            raise TransientDeliveryError(f"kafka delivery failed: {errors[0]} "
                                         f"({len(errors)} messages)")
        if left:
            raise TransientDeliveryError(f"kafka: {left} messages not delivered in {timeout} s")
        last, self._last = self._last, None
        return last

    def poll(self, timeout: float = 0.0) -> None:
        """Serve the delivery reports that have arrived (their callbacks run here)."""
        self._producer.poll(timeout)

    def wait(self, timeout: float) -> int:
        """Flush without raising: the number of messages still waiting for a report."""
        return int(self._producer.flush(timeout))


# A delivery report for send_async: (receipt, None) or (None, (error text, permanent)).
Done = Callable[[str | None, tuple[str, bool] | None], None]

# Errors a re-send cannot fix (the rest are retried by the sender, up to max_attempts).
_PERMANENT = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE,
              KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._INVALID_ARG}


class KafkaTransport:
    """Emails as JSON on `kafka.email_topic`, keyed by customer id, for a downstream sender."""

    name = "kafka"

    def __init__(self, config: Config) -> None:
        self.topic = config.kafka.email_topic
        self.client = KafkaProducerClient(config.kafka)

    def _value(self, email: Email) -> bytes:
        value = orjson.dumps({
            "key": email.key, "customer_id": email.customer_id, "trigger": email.trigger,
            "episode": email.episode, "stage": email.stage, "due": email.due, "to": email.to,
            "from": email.from_addr, "subject": email.subject, "preheader": email.preheader,
            "html": email.html, "text": email.text, "headers": dict(email.headers),
        })
        if len(value) > 900_000:
            raise PermanentDeliveryError(f"email of {len(value)} bytes exceeds the topic's "
                                         "message size")
        return value

    def send(self, email: Email) -> str:
        self.client.produce(self.topic, email.customer_id.encode(), self._value(email))
        msg = self.client.flush()
        if msg is None:
            return self.topic
        return f"{msg.topic()}[{msg.partition()}]@{msg.offset()}"

    def send_async(self, email: Email, done: Done) -> None:
        """Queue the email and return; `done` runs from a later `poll()` or `wait()`.
        Raises PermanentDeliveryError at once for an email the topic can never take."""
        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                done(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}", None)
            else:
                done(None, (f"kafka delivery to {self.topic}: {err.str()}",
                            err.code() in _PERMANENT or err.fatal()))

        self.client.produce(self.topic, email.customer_id.encode(), self._value(email),
                            on_delivery=report)

    def poll(self) -> None:
        self.client.poll()

    def wait(self, timeout: float) -> int:
        return self.client.wait(timeout)

    def close(self) -> None:
        self.client.flush()


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
