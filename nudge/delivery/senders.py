"""The sender for the configured transport (the outbox inline, Kafka pipelined, ESP and SMTP
from a pool of threads), each with that transport's own retry settings."""

from __future__ import annotations

from functools import partial

from nudge.core.config import Config
from nudge.delivery.base import Sender, Transport
from nudge.delivery.engine import RateLimiter
from nudge.delivery.ledger import Ledger
from nudge.delivery.pool import InlineSender, SenderPool
from nudge.delivery.retry import RetryPolicy


def build_transport(config: Config) -> Transport:
    """A new transport for the configured kind (each sender thread gets its own)."""
    kind = config.delivery.transport
    if kind == "outbox":
        from nudge.delivery.outbox import OutboxTransport

        return OutboxTransport(config.delivery.outbox_dir)
    if kind == "esp":
        from nudge.delivery.esp import EspTransport

        return EspTransport(config.delivery.esp)
    if kind == "smtp":
        from nudge.delivery.smtp import SmtpTransport

        return SmtpTransport(config.delivery.smtp)
    from nudge.kafka.producer import KafkaTransport

    return KafkaTransport(config)


def retry_policy(config: Config) -> RetryPolicy:
    """The configured transport's own retries (`delivery.<transport>.*`). The Kafka producer
    backs off within each attempt itself; the outbox, a local write, is not retried: a
    failure there is dead-lettered at once (and re-fed by `nudge deadletters replay`)."""
    d = config.delivery
    if d.transport in ("esp", "smtp"):
        c = d.esp if d.transport == "esp" else d.smtp
        return RetryPolicy(c.max_attempts, c.backoff_base, c.backoff_max)
    if d.transport == "kafka":
        return RetryPolicy(d.kafka.max_attempts, 0, 0)
    return RetryPolicy(1, 0, 0)


def sender_for(config: Config) -> Sender:
    """The outbox sends inline, Kafka pipelined (nudge/delivery/pipelined.py), ESP and SMTP from a
    pool of sender threads."""
    d = config.delivery
    ledger = Ledger(d.ledger_dir)
    once = d.guarantee == "at_most_once"
    if d.transport == "outbox":
        return InlineSender(build_transport(config), ledger, retry_policy(config),
                            at_most_once=once)
    if d.transport == "kafka":
        from nudge.delivery.pipelined import PipelinedSender
        from nudge.kafka.producer import KafkaTransport

        return PipelinedSender(KafkaTransport(config), ledger, retry_policy(config),
                               RateLimiter(d.rate_limit), at_most_once=once)
    return SenderPool(partial(build_transport, config), ledger, retry_policy(config),
                      concurrency=d.concurrency, queue_size=d.queue_size,
                      rate_limit=d.rate_limit, at_most_once=once)


