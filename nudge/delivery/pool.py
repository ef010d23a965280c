"""Senders that call the transport synchronously: a pool of sender threads (ESP, SMTP) and
the dataflow's own thread (the outbox)."""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from nudge.core import metrics
from nudge.core.deadletter import DeadLetter
from nudge.core.ids import log_id
from nudge.core.records import Email
from nudge.delivery.base import Transport
from nudge.delivery.engine import Deliverer, RateLimited, RateLimiter, mark_reported
from nudge.delivery.ledger import Ledger
from nudge.delivery.retry import RetryPolicy

log = logging.getLogger(__name__)

SWITCH_INTERVAL = 0.0005  # seconds; see SenderPool


class _SyncedLedger:
    """The ledger behind a lock: sender threads share it."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self.lock:
            return key in self.ledger

    def get(self, key: str) -> dict[str, Any] | None:
        with self.lock:
            return self.ledger.get(key)

    def record(self, key: str, **kw: Any) -> None:
        with self.lock:
            self.ledger.record(key, **kw)

    def erase(self, customer_id: str) -> list[str]:
        with self.lock:
            keys = self.ledger.keys_of(customer_id)
            self.ledger.erase_customer(customer_id)
        return keys

    def close(self) -> None:
        self.ledger.close()


class SenderPool:
    """Bounded concurrency and bounded memory for sends.

    `submit` blocks while `queue_size` emails wait (backpressure: the dataflow slows down
    instead of buffering without limit); `concurrency` threads send, each with its own
    transport (SMTP connections are not shareable), at most `rate_limit` sends a second
    between them. The dataflow never waits for the ESP otherwise: at a snapshot the sink
    keeps the emails still in flight (`pending()`, at most queue_size + concurrency) in its
    state instead of draining, and a resumed run submits them again. So an email is always
    in the ledger (sent or dead-lettered), in flight in a committed snapshot, or in an epoch
    that is replayed: a crash can repeat a send (the ledger absorbs it) but never lose one
    (at_most_once: an email in doubt is reported instead of repeated; engine.py).
    """

    def __init__(self, make_transport: Callable[[], Transport], ledger: Ledger,
                 policy: RetryPolicy, *, concurrency: int, queue_size: int, rate_limit: int,
                 sleep: Callable[[float], None] = time.sleep,
                 at_most_once: bool = False) -> None:
        # A sender thread holding the ESP's answer waits for the GIL before it can record the
        # send; the dataflow's thread keeps it for up to the switch interval (5 ms by default).
        # That wait is most of the window a crash can catch between the ESP's acceptance and
        # the ledger's record: 0.5 ms roughly halved its p99 (docs/performance.md).
        self.switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self.switch_interval, SWITCH_INTERVAL))
        self.queue: queue.Queue[Email | None] = queue.Queue(maxsize=queue_size)
        self.ledger = _SyncedLedger(ledger)
        self.dead: list[DeadLetter] = []
        self.dead_lock = threading.Lock()
        self.inflight: dict[str, Email] = {}  # submitted, not yet accepted or dead-lettered
        self.inflight_lock = threading.Lock()
        limiter = RateLimiter(rate_limit)
        self.deliverers = [
            Deliverer(RateLimited(make_transport(), limiter), self.ledger,  # type: ignore[arg-type]
                      policy, sleep=sleep, at_most_once=at_most_once)
            for _ in range(concurrency)
        ]
        self.threads = [threading.Thread(target=self._run, args=(d,), daemon=True,
                                         name=f"nudge-sender-{i}")
                        for i, d in enumerate(self.deliverers)]
        for t in self.threads:
            t.start()
        self.in_flight = metrics.IN_FLIGHT.labels(self.deliverers[0].transport.name)

    def _run(self, deliverer: Deliverer) -> None:
        while True:
            email = self.queue.get()
            try:
                if email is None:
                    return
                try:
                    dead = deliverer.deliver([email])
                except Exception as exc:  # a bug or a ledger failure: never lose the email
                    log.exception("sender failed on customer %s", log_id(email.customer_id))
                    dead = [DeadLetter("deliver", "sender_error", f"{type(exc).__name__}: {exc}",
                                       None, email.key.encode())]
                    metrics.email_failed(deliverer.transport.name, "sender_error", 1)
                if dead:
                    with self.dead_lock:
                        self.dead.extend(dead)
            finally:
                if email is not None:
                    with self.inflight_lock:
                        self.inflight.pop(email.key, None)
                    self.in_flight.dec()
                self.queue.task_done()

    def submit(self, email: Email) -> None:
        with self.inflight_lock:
            self.inflight[email.key] = email
        self.in_flight.inc()
        self.queue.put(email)

    def pending(self) -> list[Email]:
        """The emails not yet accepted or dead-lettered, in no particular order."""
        with self.inflight_lock:
            return list(self.inflight.values())

    def take_dead(self) -> list[DeadLetter]:
        with self.dead_lock:
            dead, self.dead = self.dead, []
        return dead

    def reported(self, dead: list[DeadLetter]) -> None:
        mark_reported(self.ledger, dead)

    def drain(self) -> list[DeadLetter]:
        """Wait until every submitted email was accepted or dead-lettered (at the end)."""
        self.queue.join()
        return self.take_dead()

    def erase(self, customer_id: str) -> list[str]:
        return self.ledger.erase(customer_id)

    @property
    def stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for d in self.deliverers:
            for k, v in d.stats.items():
                total[k] = total.get(k, 0) + v
        return total

    def close(self) -> list[DeadLetter]:
        dead = self.drain()
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()
        for d in self.deliverers:
            d.transport.close()
        self.ledger.close()
        sys.setswitchinterval(self.switch_interval)
        return dead


class InlineSender:
    """Sends in the dataflow's own thread. For the outbox: writing a local file costs less
    than handing the email to a thread, and sender threads would contend with the dataflow
    for the GIL (measured: 8 threads made a replay ~2x slower than writing inline)."""

    def __init__(self, transport: Transport, ledger: Ledger, policy: RetryPolicy, *,
                 at_most_once: bool = False) -> None:
        self.deliverer = Deliverer(transport, ledger, policy, at_most_once=at_most_once)
        self.dead: list[DeadLetter] = []

    def submit(self, email: Email) -> None:
        self.dead.extend(self.deliverer.deliver([email]))

    def pending(self) -> list[Email]:
        return []  # every submit returned after the send

    def take_dead(self) -> list[DeadLetter]:
        dead, self.dead = self.dead, []
        return dead

    def reported(self, dead: list[DeadLetter]) -> None:
        mark_reported(self.deliverer.ledger, dead)

    def drain(self) -> list[DeadLetter]:
        return self.take_dead()

    def erase(self, customer_id: str) -> list[str]:
        ledger = self.deliverer.ledger
        keys = ledger.keys_of(customer_id)
        ledger.erase_customer(customer_id)
        return keys

    @property
    def stats(self) -> dict[str, int]:
        return dict(self.deliverer.stats)

    def close(self) -> list[DeadLetter]:
        dead = self.drain()
        self.deliverer.transport.close()
        self.deliverer.ledger.close()
        return dead


