"""The error tree. Every error Nudge raises on purpose is one of these:

    NudgeError
    ├── ConfigError          a bad config file or value; names the key path (`caps.window`)
    ├── InputError           a record that cannot become an event; becomes a dead letter,
    │                        never stops the flow. `reason` is a stable machine code.
    ├── SourceError          an input (file, Kafka) that cannot be read; names the source
    ├── RenderError          a template that fails; names the template and the customer hash
    ├── StaleBuildError      a compiled module older than its source (nudge/tools/native.py)
    ├── SnapshotError        recovery state of another format (another version of Nudge)
    ├── StoreError           a local RocksDB store cannot be opened or written; names its path
    │   ├── LedgerError          the send ledger (delivery.ledger_dir)
    │   ├── ProfileError         the profile view (outputs.profiles)
    │   └── ReplayStoreError     the dead-letter replay store (dead_letter_replay.state_dir)
    └── DeliveryError        a transport refused or failed a send
        ├── TransientDeliveryError   retry with backoff (429, 5xx, timeouts, resets, SMTP 4xx)
        └── PermanentDeliveryError   dead-letter at once (4xx other than 429, SMTP 5xx)

Errors from libraries (confluent-kafka, httpx, smtplib, rocksdict, jinja2) are translated into
this tree in the one boundary module that uses each library. A message is one line, for the
user: the command line prints it as `nudge: <message>` and exits 2, also when it was raised
inside the dataflow (nudge/app/cli.py finds it in the chain of Bytewax's errors).
"""

from __future__ import annotations


class NudgeError(Exception):
    """Base of every error Nudge raises on purpose."""


class ConfigError(NudgeError):
    """A configuration value is missing, of the wrong type or out of range."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"config {path}: {reason}")
        self.path = path
        self.reason = reason


class InputError(NudgeError):
    """An input record cannot become an event. `reason` is a stable code for dead letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class SourceError(NudgeError):
    """An input source cannot be read (missing file, unreachable broker, unknown topic)."""


class RenderError(NudgeError):
    """A template failed to render."""


class StaleBuildError(NudgeError):
    """A source was edited after `make compile`: its extension would run the old code."""

    def __init__(self, sources: list[str]) -> None:
        super().__init__(f"{', '.join(sources)}: edited after it was compiled; run `make "
                         "compile` to rebuild or `make pure` to run pure Python")
        self.sources = sources


class SnapshotError(NudgeError):
    """A snapshot (recovery state, a profile) of a format this version cannot read."""

    def __init__(self, what: str, found: object, expected: object) -> None:
        super().__init__(f"{what} is of format {found}, this version of Nudge reads "
                         f"{expected}: it was written by another version; start with a new "
                         "recovery.dir")
        self.what = what
        self.found = found
        self.expected = expected


class StoreError(NudgeError):
    """A local store (RocksDB) cannot be opened, read or written; the message names its path."""


class LedgerError(StoreError):
    """The send ledger (nudge/delivery/ledger.py)."""


class ProfileError(StoreError):
    """The profile view (nudge/state/profiles.py)."""


class ReplayStoreError(StoreError):
    """The dead-letter replay store (nudge/state/replayed.py)."""


class DeliveryError(NudgeError):
    """A transport did not accept a send."""

    def __init__(self, message: str, *, status: int | None = None, response: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.response = response


class TransientDeliveryError(DeliveryError):
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        response: str = "",
        retry_after: float | None = None,
        maybe_sent: bool = False,
    ) -> None:
        super().__init__(message, status=status, response=response)
        self.retry_after = retry_after
        # The request left and no answer came (a read timeout, a connection lost after the
        # message was sent): the receiver may have accepted it. At most once never retries it.
        self.maybe_sent = maybe_sent


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: the request or the recipient was refused."""
