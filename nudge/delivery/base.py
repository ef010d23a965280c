"""The two contracts of delivery: a Transport sends one email, a Sender runs transports for
the dataflow (ledger, retries, concurrency, dead letters)."""

from __future__ import annotations

from typing import Protocol

from nudge.core.deadletter import DeadLetter
from nudge.core.records import Email


class Transport(Protocol):
    """Sends one rendered email.

    `send` returns an id the receiving side gave the message (ESP message id, outbox path,
    Kafka topic/partition@offset) once the transport has *accepted* it, and raises
    TransientDeliveryError (retry) or PermanentDeliveryError (dead-letter) otherwise.
    """

    name: str

    def send(self, email: Email) -> str: ...

    def close(self) -> None: ...


class Sender(Protocol):
    """What the deliver sink drives (pool.py: SenderPool, InlineSender; pipelined.py).

    `submit` hands over an email, skipping one whose key the ledger already holds; it may
    block for backpressure. `pending` lists what was submitted and is neither accepted nor
    dead-lettered (kept in the sink's snapshot); `take_dead` returns the dead letters since
    the last call, and `reported` is told once they are written (emails in doubt are settled
    only then); `drain` waits for everything submitted; `close` drains and releases the
    transports and the ledger.
    """

    def submit(self, email: Email) -> None: ...

    def pending(self) -> list[Email]: ...

    def take_dead(self) -> list[DeadLetter]: ...

    def reported(self, dead: list[DeadLetter]) -> None: ...

    def drain(self) -> list[DeadLetter]: ...

    def erase(self, customer_id: str) -> list[str]:
        """Delete the customer's ledger entries (an erasure; call after `drain`) and return
        their keys."""
        ...

    @property
    def stats(self) -> dict[str, int]: ...

    def close(self) -> list[DeadLetter]: ...
