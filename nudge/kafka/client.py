"""The client configuration and logging every Kafka client of Nudge shares.

`kafka.client_config` (TLS, SASL, timeouts: librdkafka's own keys) is applied last to every
consumer, producer and admin client, so one table in the config file secures them all.
"""

from __future__ import annotations

import logging
from typing import Any

from nudge.core.config import KafkaConfig


class LibrdkafkaLog:
    """librdkafka's log lines into Python logging. A failed (re)connect is logged by
    librdkafka at error level on every attempt, many a second; Nudge reports an outage
    itself (once, then every 30 s), so those facilities go to DEBUG."""

    QUIET = frozenset({"FAIL", "REQTMOUT"})

    def __init__(self) -> None:
        self._log = logging.getLogger("nudge.kafka.librdkafka")

    def log(self, level: int, fmt: str, *args: Any) -> None:
        if args and args[0] in self.QUIET:
            level = logging.DEBUG
        self._log.log(level, fmt, *args)


def consumer_config(config: KafkaConfig) -> dict[str, Any]:
    """The client settings shared by consumers and admin clients: the brokers, the log
    adapter, and `kafka.client_config` (security, SASL, ...) last so it wins."""
    conf: dict[str, Any] = {"bootstrap.servers": ",".join(config.brokers),
                            "logger": LibrdkafkaLog()}
    conf.update(dict(config.client_config))
    return conf


def producer_config(config: KafkaConfig) -> dict[str, Any]:
    """Idempotent, acknowledged by every in-sync replica, batched for 5 ms."""
    conf: dict[str, Any] = {"bootstrap.servers": ",".join(config.brokers), "acks": "all",
                            "enable.idempotence": True, "linger.ms": 5,
                            "logger": LibrdkafkaLog()}
    conf.update(dict(config.client_config))
    return conf
