"""Deliver one email: ledger check -> transport (with retries) -> ledger record.

`delivery.guarantee` chooses what a crash may cost:

- at_least_once (default): a send is recorded only after the transport accepted it (or after
  its final failure, so a resume does not retry it forever). A crash between the two leaves
  no record, and the resumed run sends the email again: nothing is lost, and an ESP that does
  not de-duplicate by Idempotency-Key may deliver a copy.
- at_most_once: the attempt is recorded (`attempting`) before the transport is called. A
  resumed run that finds an attempt without an outcome does not send: the email's fate is
  unknown, and it becomes a dead letter `in_doubt` naming the customer (log id) and the email
  key, for an operator to check with the ESP. A failure after which the receiver may hold the
  message (a timeout once the request left) is not retried either, and is reported the same
  way. Nothing is sent twice; an email in doubt may be lost.

Re-emitted emails whose key holds an outcome are skipped. The senders (pool.py, pipelined.py)
run this per email.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import orjson

from nudge.core import metrics
from nudge.core.deadletter import DeadLetter
from nudge.core.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from nudge.core.ids import log_id
from nudge.core.records import Email
from nudge.delivery.base import Transport
from nudge.delivery.ledger import Ledger
from nudge.delivery.retry import RetryPolicy, send_with_retry

log = logging.getLogger(__name__)


ATTEMPTING = "attempting"  # at_most_once: recorded before the transport is called


class Deliverer:
    def __init__(self, transport: Transport, ledger: Ledger, policy: RetryPolicy, *,
                 sleep: Callable[[float], None] = time.sleep,
                 at_most_once: bool = False) -> None:
        self.transport = transport
        self.ledger = ledger
        self.policy = policy
        self.sleep = sleep
        self.at_most_once = at_most_once
        self.stats = {"sent": 0, "skipped_duplicate": 0, "dead_lettered": 0, "attempts": 0,
                      "in_doubt": 0, "resent_in_doubt": 0}

    def deliver(self, emails: list[Email]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        for email in emails:
            entry = self.ledger.get(email.key)
            if entry is not None:
                if entry["outcome"] != ATTEMPTING:
                    self.stats["skipped_duplicate"] += 1
                    continue
                if self.at_most_once:
                    self.stats["in_doubt"] += 1
                    dead.append(in_doubt(self.transport.name, email,
                                         "sent before a crash, no answer recorded"))
                    continue
                self.stats["resent_in_doubt"] += 1  # at least once: send it again
            if self.at_most_once:
                self.ledger.record(email.key, outcome=ATTEMPTING, transport=self.transport.name,
                                   receipt="", attempts=0)
            try:
                receipt, attempts = send_with_retry(
                    self.transport, email, self.policy, seed=zlib.crc32(email.key.encode()),
                    sleep=self.sleep, at_most_once=self.at_most_once)
            except DeliveryError as exc:
                if self.at_most_once and isinstance(exc, TransientDeliveryError) \
                        and exc.maybe_sent:
                    self.stats["attempts"] += 1  # at most once: the one attempt it had
                    self.stats["in_doubt"] += 1
                    dead.append(in_doubt(self.transport.name, email, str(exc)))
                    continue
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
    return DeadLetter("deliver", reason, detail, None, _raw(email))


def in_doubt(transport: str, email: Email, detail: str) -> DeadLetter:
    """at_most_once: the dead letter of an email that may or may not have been delivered. The
    ledger keeps `attempting` until the dead letter is written (`mark_reported`): a crash in
    between reports it again on resume rather than never."""
    metrics.DEAD_LETTERS.labels("deliver", "in_doubt").inc()
    metrics.email_failed(transport, "in_doubt", 1)
    log.warning("email to customer %s (%s stage %d) is in doubt and is not sent again "
                "(delivery.guarantee = at_most_once): %s",
                log_id(email.customer_id), email.trigger, email.stage, detail)
    return DeadLetter("deliver", "in_doubt", f"{transport}: {detail}; not sent again "
                                             "(delivery.guarantee = at_most_once)",
                      None, _raw(email))


def mark_reported(ledger: Any, dead: list[DeadLetter]) -> None:
    """Once `dead` is written: the emails in doubt among them are settled (never reported or
    sent again)."""
    for d in dead:
        if d.reason == "in_doubt":
            ledger.record(orjson.loads(d.raw)["key"], outcome="in_doubt", transport="",
                          receipt="in_doubt", attempts=1)


def _raw(email: Email) -> bytes:
    # message_key: what the ESP knows the email by (Idempotency-Key, X-Nudge-Key, custom args)
    return orjson.dumps({
        "key": email.key, "customer": log_id(email.customer_id), "trigger": email.trigger,
        "episode": email.episode, "stage": email.stage, "due": email.due,
        "message_key": hashlib.sha256(email.key.encode()).hexdigest()[:32]})


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


