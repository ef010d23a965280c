"""`nudge erase`: the right to erasure, for one customer id or every customer of an address.

Two halves, because a running flow owns its state:

- **the event**: an `Erasure Requested` for each customer id, produced to `kafka.topic`
  (keyed by the id, like any event of the customer) or, with `--no-kafka`, printed as JSON
  lines to append to a replay file. The flow erases the customer's record, pending stages
  and profile view entry when it reaches the event, in event time and consistently with its
  recovery snapshots, and keeps a digest of the address on the suppression list
  (nudge/state/suppression.py) so that the address is not mailed again.
- **the offline stores** the command can open itself: the ledger's entries and the outbox's
  emails of the customer, and the customer's lines in the file outputs (decision log,
  segments, outcomes, dead letters); the profile view too when no flow holds it. A store
  held by a running flow is reported, not skipped silently: run the command again once the
  flow has stopped (docs/privacy.md says what lives where).

With `--email`, the customer ids come from the profile view (`outputs.profiles`); when it
names none, the event carries only the address (under a customer id derived from its
digest, which has no record), so the address is still suppressed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nudge.core.address import canonical, digest
from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.timefmt import to_iso


@dataclass
class ErasureReport:
    customers: list[str]
    events: list[bytes] = field(default_factory=list)
    produced_to: str | None = None
    done: list[str] = field(default_factory=list)  # what was erased where
    held: list[str] = field(default_factory=list)  # stores a running flow holds

    def lines(self) -> list[str]:
        out = [f"erasure of {len(self.customers)} customer id(s)"]
        if self.produced_to:
            out.append(f"  produced {len(self.events)} Erasure Requested event(s) to "
                       f"{self.produced_to}: the flow erases state, pending stages and the "
                       "profile view when it reads them")
        out += [f"  {line}" for line in self.done]
        out += [f"  not erased (held by a running flow; run again once it stopped): {h}"
                for h in self.held]
        return out


def erasure_events(customers: list[str], email: str | None, now_ms: int) -> list[bytes]:
    """The `Erasure Requested` events (one per id; an address alone gets an id of its own)."""
    ids = customers or [f"erasure-{digest(email).hex()}"] if email else customers
    props: dict[str, Any] = {"email": email} if email else {}
    return [orjson.dumps({"type": "track", "event": "Erasure Requested", "userId": cid,
                          "messageId": f"erasure-{uuid.uuid4()}", "timestamp": to_iso(now_ms),
                          "properties": props}) for cid in ids]


def _customers_of(config: Config, email: str, report: ErasureReport) -> list[str]:
    from nudge.state.profiles import ProfileError, ProfileStore

    if not config.outputs.profiles:
        return []
    try:
        view = ProfileStore(config.outputs.profiles, read_only=True)
    except ProfileError:
        return []
    try:
        return view.customers_with_email(email)
    finally:
        view.close()


def _erase_profiles(config: Config, customers: list[str], report: ErasureReport) -> None:
    from nudge.state.profiles import ProfileError, ProfileStore

    path = config.outputs.profiles
    if not path or not Path(path).is_dir():
        return
    try:
        view = ProfileStore(path)
    except ProfileError:
        report.held.append(f"profile view {path}")
        return
    try:
        n = view.erase(customers)
    finally:
        view.close()
    ProfileStore(path).close()  # RocksDB writes a new MANIFEST on open: old key bounds go
    report.done.append(f"profile view {path}: {n} record(s) deleted and compacted")


def _erase_ledger_and_outbox(config: Config, customers: list[str],
                             report: ErasureReport) -> None:
    from nudge.delivery.ledger import Ledger, LedgerError

    d = config.delivery
    if not Path(d.ledger_dir).is_dir():
        return
    try:
        ledger = Ledger(d.ledger_dir)
    except LedgerError:
        report.held.append(f"ledger {d.ledger_dir} (and the outbox's emails it names)")
        return
    try:
        keys = [k for cid in customers for k in ledger.keys_of(cid)]
        n = sum(ledger.erase_customer(cid) for cid in customers)
    finally:
        ledger.close()
    Ledger(d.ledger_dir).close()  # RocksDB writes a new MANIFEST on open: old key bounds go
    report.done.append(f"ledger {d.ledger_dir}: {n} entr(ies) deleted")
    outbox = Path(d.outbox_dir)
    if outbox.is_dir():
        from nudge.delivery.outbox import erase_files

        gone = erase_files(outbox, keys)
        report.done.append(f"outbox {outbox}: {gone} email(s) deleted")


def _mentions(line: bytes, customers: set[str], email: str | None) -> bool:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(obj, dict):
        return False
    if obj.get("customer_id") in customers:
        return True
    raw = obj.get("raw")
    if isinstance(raw, str):  # a dead letter: the original record, or an email's key
        if raw.split("\x1f", 1)[0] in customers or any(f'"{cid}"' in raw for cid in customers):
            return True
        if email and email.lower() in raw.lower():
            return True
    return False


def _erase_lines(path: Path, customers: set[str], email: str | None,
                 report: ErasureReport) -> None:
    if not path.is_file():
        return
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if not _mentions(line, customers, email)]
    if len(kept) == len(lines):
        return
    tmp = path.with_suffix(path.suffix + ".erasing")
    tmp.write_bytes(b"".join(kept))
    tmp.replace(path)
    report.done.append(f"{path}: {len(lines) - len(kept)} line(s) removed")


def erase(config: Config, customer_id: str | None, email: str | None, *,
          kafka: bool = True, now_ms: int | None = None) -> ErasureReport:
    if email is not None:
        address = canonical(email.strip())
        if address is None:
            raise NudgeError(f"--email {email!r}: not a plain address")
        email = address
    customers = [customer_id] if customer_id else []
    report = ErasureReport(customers)
    if email and not customers:
        customers = report.customers = _customers_of(config, email, report)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    report.events = erasure_events(customers, email, now)
    if kafka:
        from nudge.kafka.producer import KafkaProducerClient

        producer = KafkaProducerClient(config.kafka)
        for raw in report.events:
            key = orjson.loads(raw)["userId"]
            producer.produce(config.kafka.topic, key.encode(), raw)
        producer.flush()
        report.produced_to = f"topic {config.kafka.topic}"
    ids = set(customers)
    if ids:
        _erase_profiles(config, customers, report)
        _erase_ledger_and_outbox(config, customers, report)
    o = config.outputs
    for out in (o.decisions, o.segments, o.outcomes, o.dead_letters):
        if out and out != "kafka":
            _erase_lines(Path(out), ids, email, report)
    if o.dead_letters and o.dead_letters != "kafka":
        _erase_lines(Path(o.dead_letters).with_suffix(".delivery.jsonl"), ids, email, report)
    return report
