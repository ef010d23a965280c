"""Retries with exponential backoff and full jitter, honouring Retry-After.

Attempt n (1-based) that fails transiently waits uniform(0, min(max, base * 2**(n-1))),
or the server's Retry-After if that is longer (honoured up to 60 s, or `max` if
larger). A permanent failure is
raised at once; the last transient one is raised after `max_attempts`. Jitter comes from
a Random seeded per email, so a rerun waits the same way (no unseeded randomness).

>>> policy = RetryPolicy(max_attempts=4, base_ms=100, max_ms=1000)
>>> [policy.ceiling_ms(n) for n in (1, 2, 3, 4, 5)]
[100, 200, 400, 800, 1000]
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from nudge.core.errors import TransientDeliveryError
from nudge.core.records import Email
from nudge.delivery.base import Transport


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    base_ms: int
    max_ms: int

    def ceiling_ms(self, attempt: int) -> int:
        return int(min(self.max_ms, self.base_ms * 2 ** (attempt - 1)))

    def delay_s(self, attempt: int, rng: random.Random, retry_after: float | None) -> float:
        delay = rng.uniform(0, self.ceiling_ms(attempt)) / 1000
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(60.0, self.max_ms / 1000)))
        return delay


def send_with_retry(transport: Transport, email: Email, policy: RetryPolicy, *,
                    seed: int, sleep: Callable[[float], None] = time.sleep,
                    at_most_once: bool = False) -> tuple[str, int]:
    """(receipt, attempts). Raises PermanentDeliveryError or the last TransientDeliveryError;
    `at_most_once` raises at once a failure after which the receiver may have the message
    (`maybe_sent`), since a retry could deliver it twice.
    The jitter's Random is seeded with `seed` at the first retry (seeding one costs ~6 µs,
    and most sends need none)."""
    attempt = 0
    rng: random.Random | None = None
    while True:
        attempt += 1
        try:
            return transport.send(email), attempt
        except TransientDeliveryError as exc:
            if attempt >= policy.max_attempts or (at_most_once and exc.maybe_sent):
                raise
            if rng is None:
                rng = random.Random(seed)
            sleep(policy.delay_s(attempt, rng, exc.retry_after))
