"""Deliver: ledger check -> transport (with retries) -> ledger record. Effectively once.

    in:  ("decide", Email)   (a single sink partition: one ledger, one writer)

A send is recorded in the ledger only after the transport accepted it; a permanent failure
or exhausted retries are recorded too (so a resume does not retry them forever) and become
dead letters with the last error. Emails re-emitted after a crash and resume find their key
in the ledger and are skipped.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from delivery.base import Transport
from delivery.retry import RetryPolicy, send_with_retry
from flows import metrics
from nudge.config import Config
from nudge.errors import DeliveryError, PermanentDeliveryError
from nudge.ids import log_id
from nudge.records import DeadLetter, Email
from state.ledger import Ledger

log = logging.getLogger(__name__)


class Deliverer:
    def __init__(self, transport: Transport, ledger: Ledger, policy: RetryPolicy, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.transport = transport
        self.ledger = ledger
        self.policy = policy
        self.sleep = sleep
        self.stats = {"sent": 0, "skipped_duplicate": 0, "dead_lettered": 0, "attempts": 0}

    def deliver(self, emails: list[Email]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        for email in emails:
            if email.key in self.ledger:
                self.stats["skipped_duplicate"] += 1
                continue
            rng = random.Random(zlib.crc32(email.key.encode()))
            try:
                receipt, attempts = send_with_retry(self.transport, email, self.policy,
                                                    rng=rng, sleep=self.sleep)
            except DeliveryError as exc:
                permanent = isinstance(exc, PermanentDeliveryError)
                attempts = 1 if permanent else self.policy.max_attempts
                self.stats["attempts"] += attempts
                reason = "permanent_failure" if permanent else "retries_exhausted"
                detail = f"{self.transport.name}: {exc}"
                if exc.status is not None:
                    detail += f" (status {exc.status})"
                if exc.response:
                    detail += f": {exc.response[:2048]}"
                self.ledger.record(email.key, outcome="dead_lettered",
                                   transport=self.transport.name, receipt=reason,
                                   attempts=attempts)
                self.stats["dead_lettered"] += 1
                metrics.DEAD_LETTERS.labels("deliver", reason).inc()
                log.warning("send to customer %s (%s stage %d) dead-lettered: %s",
                            log_id(email.customer_id), email.trigger, email.stage, reason)
                dead.append(DeadLetter("deliver", reason, detail, None, orjson.dumps({
                    "key": email.key, "customer": log_id(email.customer_id),
                    "trigger": email.trigger, "episode": email.episode, "stage": email.stage,
                    "due": email.due})))
                continue
            self.stats["attempts"] += attempts
            self.ledger.record(email.key, outcome="sent", transport=self.transport.name,
                               receipt=receipt, attempts=attempts)
            self.stats["sent"] += 1
        return dead


def build_transport(config: Config) -> Transport:
    kind = config.delivery.transport
    if kind == "outbox":
        from delivery.outbox import OutboxTransport

        return OutboxTransport(config.delivery.outbox_dir)
    if kind == "esp":
        from delivery.esp import EspTransport

        return EspTransport(config.delivery.esp)
    if kind == "smtp":
        from delivery.smtp import SmtpTransport

        return SmtpTransport(config.delivery.smtp)
    from delivery.kafka import KafkaTransport

    return KafkaTransport(config)


def retry_policy(config: Config) -> RetryPolicy:
    c = config.delivery.esp if config.delivery.transport == "esp" else config.delivery.smtp
    return RetryPolicy(c.max_attempts, c.backoff_base, c.backoff_max)


class _DeliveryPartition(StatefulSinkPartition[Email, None]):
    def __init__(self, config: Config, dead_letters: Path | None) -> None:
        self.deliverer = Deliverer(build_transport(config), Ledger(config.delivery.ledger_dir),
                                   retry_policy(config))
        self.dead_path = dead_letters
        if dead_letters is not None:
            dead_letters.parent.mkdir(parents=True, exist_ok=True)

    def write_batch(self, values: list[Email]) -> None:
        dead = self.deliverer.deliver(values)
        if dead and self.dead_path is not None:
            with self.dead_path.open("ab") as f:
                for d in dead:
                    f.write(orjson.dumps(d.to_json()) + b"\n")

    def snapshot(self) -> None:
        return None  # the ledger, not the snapshot, is the truth about sends

    def close(self) -> None:
        self.deliverer.transport.close()
        self.deliverer.ledger.close()


class DeliverySink(FixedPartitionedSink[Email, None]):
    """One partition: the ledger has one writer (RocksDB allows one process)."""

    def __init__(self, config: Config, dead_letters: Path | None) -> None:
        self.config = config
        self.dead_letters = dead_letters

    def list_parts(self) -> list[str]:
        return ["deliver"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _DeliveryPartition:
        return _DeliveryPartition(self.config, self.dead_letters)
