"""Deliver one email effectively once: ledger check -> transport (with retries) -> ledger record.

A send is recorded in the ledger only after the transport accepted it; a permanent failure
or exhausted retries are recorded too (so a resume does not retry them forever) and become
dead letters with the last error. Emails re-emitted after a crash and resume find their key
in the ledger and are skipped. The senders (pool.py, pipelined.py) run this per email.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from nudge.core import metrics
from nudge.core.errors import DeliveryError, PermanentDeliveryError
from nudge.core.ids import log_id
from nudge.core.records import DeadLetter, Email
from nudge.delivery.base import Transport
from nudge.delivery.ledger import Ledger
from nudge.delivery.retry import RetryPolicy, send_with_retry

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
            try:
                receipt, attempts = send_with_retry(
                    self.transport, email, self.policy, seed=zlib.crc32(email.key.encode()),
                    sleep=self.sleep)
            except DeliveryError as exc:
                permanent = isinstance(exc, PermanentDeliveryError)
                attempts = 1 if permanent else self.policy.max_attempts
                self.stats["attempts"] += attempts
                self.stats["dead_lettered"] += 1
                dead.append(dead_letter(self.ledger, self.transport.name, email, exc, attempts))
                continue
            self.stats["attempts"] += attempts
            self.ledger.record(email.key, outcome="sent", transport=self.transport.name,
                               receipt=receipt, attempts=attempts)
            self.stats["sent"] += 1
            metrics.email_sent(self.transport.name, email, attempts)
        return dead


def dead_letter(ledger: Any, transport: str, email: Email, exc: DeliveryError,
                attempts: int) -> DeadLetter:
    """Record a final failure in the ledger (a resume does not retry it forever) and make
    its dead letter, with the last error and the response."""
    reason = "permanent_failure" if isinstance(exc, PermanentDeliveryError) \
        else "retries_exhausted"
    detail = f"{transport}: {exc}"
    if exc.status is not None:
        detail += f" (status {exc.status})"
    if exc.response:
        detail += f": {exc.response[:2048]}"
    ledger.record(email.key, outcome="dead_lettered", transport=transport, receipt=reason,
                  attempts=attempts)
    metrics.DEAD_LETTERS.labels("deliver", reason).inc()
    metrics.email_failed(transport, reason, attempts)
    log.warning("send to customer %s (%s stage %d) dead-lettered: %s",
                log_id(email.customer_id), email.trigger, email.stage, reason)
    return DeadLetter("deliver", reason, detail, None, orjson.dumps({
        "key": email.key, "customer": log_id(email.customer_id), "trigger": email.trigger,
        "episode": email.episode, "stage": email.stage, "due": email.due}))


class RateLimiter:
    """A token bucket shared by the sender threads: at most `per_second` sends per second,
    in bursts of at most one second's worth. Wall-clock pacing only; it decides nothing.

    A caller takes its token at once, running the bucket into debt if need be, and sleeps
    the debt off outside the lock: one sleep per send, never a retry loop (waiting for the
    bucket to refill to exactly 1 can spin on sub-microsecond waits with float clocks)."""

    def __init__(self, per_second: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = per_second
        self.clock = clock
        self.sleep = sleep
        self.tokens = float(per_second)
        self.stamp = clock()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        if not self.rate:
            return
        with self.lock:
            now = self.clock()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)


class RateLimited:
    """A transport wrapper that takes a token before each attempt (retries count too)."""

    def __init__(self, transport: Transport, limiter: RateLimiter) -> None:
        self.inner = transport
        self.limiter = limiter
        self.name = transport.name

    def send(self, email: Email) -> str:
        self.limiter.acquire()
        return self.inner.send(email)

    def close(self) -> None:
        self.inner.close()


