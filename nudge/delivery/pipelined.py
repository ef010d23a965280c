"""A sender for transports that take sends asynchronously (Kafka): no threads, no wait per
email.

The dataflow's own thread queues each email with the producer and carries on; delivery
reports arrive on later polls (each submit polls) and are written to the ledger then, in
the same thread, so the ledger needs no lock. Measured against the thread pool, which
flushed once per email from 8 threads: the pool's GIL hand-offs slowed the whole flow
(README, Performance).

The guarantees are the pool's: an email is in the ledger (sent or dead-lettered), or in
flight and kept in the sink's snapshot (`pending()`), or in an epoch that is replayed. A
crash between the broker's acknowledgement and the ledger write re-sends it; consumers
of the email topic de-duplicate on its `key` (at_most_once: the attempt is recorded
first, and after a crash an email without a report is a dead letter `in_doubt`, never
produced again, as is a failed report, which may hide a write). A failed report is re-sent up to
`max_attempts` times (the producer already retried and backed off within each attempt),
then dead-lettered, as is at once an email the topic can never take.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from nudge.core import metrics
from nudge.core.deadletter import DeadLetter
from nudge.core.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from nudge.core.records import Email
from nudge.delivery.engine import ATTEMPTING, RateLimiter, dead_letter, in_doubt, mark_reported
from nudge.delivery.ledger import Ledger

log = logging.getLogger(__name__)


class AsyncTransport(Protocol):
    name: str

    def send_async(self, email: Email, done: Any) -> None: ...

    def poll(self) -> None: ...

    def wait(self, timeout: float) -> int: ...

    def close(self) -> None: ...


class PipelinedSender:
    def __init__(self, transport: AsyncTransport, ledger: Ledger, policy: Any,
                 limiter: RateLimiter | None = None, *, at_most_once: bool = False) -> None:
        self.transport = transport
        self.at_most_once = at_most_once
        self.ledger = ledger
        self.max_attempts = policy.max_attempts
        self.limiter = limiter
        self.inflight: dict[str, Email] = {}  # queued with the producer, no report yet
        self.retries: list[tuple[Email, int]] = []  # failed reports, re-sent after the poll
        self.dead: list[DeadLetter] = []
        self.stats = {"sent": 0, "skipped_duplicate": 0, "dead_lettered": 0, "attempts": 0,
                      "in_doubt": 0, "resent_in_doubt": 0}
        self.in_flight = metrics.IN_FLIGHT.labels(transport.name)

    def submit(self, email: Email) -> None:
        entry = None if email.key in self.inflight else self.ledger.get(email.key)
        if email.key in self.inflight or (entry is not None
                                          and entry["outcome"] != ATTEMPTING):
            self.stats["skipped_duplicate"] += 1  # re-emitted after a resume
        elif entry is not None and self.at_most_once:  # attempted before a crash
            self.stats["in_doubt"] += 1
            self.dead.append(in_doubt(self.transport.name, email,
                                      "produced before a crash, no report recorded"))
        else:
            self.in_flight.inc()
            if entry is not None:
                self.stats["resent_in_doubt"] += 1
            elif self.at_most_once:
                self.ledger.record(email.key, outcome=ATTEMPTING, transport=self.transport.name,
                                   receipt="", attempts=0)
            self._send(email, 1)
        self._poll()

    def _send(self, email: Email, attempt: int) -> None:
        if self.limiter is not None:
            self.limiter.acquire()
        self.inflight[email.key] = email
        self.stats["attempts"] += 1
        try:
            self.transport.send_async(email, lambda receipt, error: self._done(
                email, attempt, receipt, error))
        except DeliveryError as exc:  # refused before it was queued
            self._fail(email, attempt, exc)

    def _done(self, email: Email, attempt: int, receipt: str | None,
              error: tuple[str, bool] | None) -> None:
        if error is None:
            self.inflight.pop(email.key, None)
            self.ledger.record(email.key, outcome="sent", transport=self.transport.name,
                               receipt=receipt or "", attempts=attempt)
            self.stats["sent"] += 1
            self.in_flight.dec()
            metrics.email_sent(self.transport.name, email, attempt)
            return
        text, permanent = error
        # a failed report (a timeout, a broker lost) may hide a write that happened
        self._fail(email, attempt, PermanentDeliveryError(text) if permanent
                   else TransientDeliveryError(text, maybe_sent=True))

    def _fail(self, email: Email, attempt: int, exc: DeliveryError) -> None:
        if self.at_most_once and isinstance(exc, TransientDeliveryError) and exc.maybe_sent:
            self.inflight.pop(email.key, None)
            self.in_flight.dec()
            self.stats["in_doubt"] += 1
            self.dead.append(in_doubt(self.transport.name, email, str(exc)))
            return
        if isinstance(exc, TransientDeliveryError) and attempt < self.max_attempts:
            log.info("send %d of %d failed, sending again: %s", attempt, self.max_attempts, exc)
            self.retries.append((email, attempt + 1))
            return
        self.inflight.pop(email.key, None)
        self.in_flight.dec()
        self.stats["dead_lettered"] += 1
        self.dead.append(dead_letter(self.ledger, self.transport.name, email, exc, attempt))

    def _poll(self) -> None:
        self.transport.poll()
        while self.retries:
            retries, self.retries = self.retries, []
            for email, attempt in retries:
                self._send(email, attempt)

    def pending(self) -> list[Email]:
        """The emails not yet accepted or dead-lettered (kept in the sink's snapshot)."""
        self._poll()
        return list(self.inflight.values())

    def take_dead(self) -> list[DeadLetter]:
        dead, self.dead = self.dead, []
        return dead

    def erase(self, customer_id: str) -> list[str]:
        keys = self.ledger.keys_of(customer_id)
        self.ledger.erase_customer(customer_id)
        return keys

    def reported(self, dead: list[DeadLetter]) -> None:
        mark_reported(self.ledger, dead)

    def drain(self) -> list[DeadLetter]:
        """Wait for a report on every email sent (at the end of a bounded run)."""
        since = time.monotonic()
        while self.inflight or self.retries:
            self._poll()
            if self.inflight and self.transport.wait(1.0) and time.monotonic() - since > 30:
                log.warning("still waiting for the broker to acknowledge %d emails",
                            len(self.inflight))
                since = time.monotonic()
        return self.take_dead()

    def close(self) -> list[DeadLetter]:
        dead = self.drain()
        self.transport.close()
        self.ledger.close()
        return dead
