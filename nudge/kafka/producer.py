"""Kafka on the producing side: an acknowledged producer client and the email transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from nudge.core.config import Config, KafkaConfig
from nudge.core.errors import PermanentDeliveryError, TransientDeliveryError
from nudge.core.records import Email
from nudge.kafka.client import producer_config


class KafkaProducerClient:
    def __init__(self, config: KafkaConfig) -> None:
        self._producer = Producer(producer_config(config))
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
