"""The transport contract shared by every delivery module."""

from __future__ import annotations

from typing import Protocol

from nudge.records import Email


class Transport(Protocol):
    """Sends one rendered email.

    `send` returns an id the receiving side gave the message (ESP message id, outbox path,
    Kafka topic/partition@offset) once the transport has *accepted* it, and raises
    TransientDeliveryError (retry) or PermanentDeliveryError (dead-letter) otherwise.
    """

    name: str

    def send(self, email: Email) -> str: ...

    def close(self) -> None: ...
