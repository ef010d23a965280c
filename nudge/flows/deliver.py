"""The deliver step: a Bytewax sink around the configured sender (nudge/delivery/).

    in:  ("decide", Email | Erasure)   (a single sink partition: one ledger, one writer)

An Erasure comes down the emails' own path, after every email of the customer due before
it: the sink waits for what is in flight, then deletes the customer's ledger entries and
(outbox transport) their emails.

The sink's state is the emails still in flight at a snapshot: a resumed run submits them
again and the ledger skips those accepted before the crash (nudge/delivery/engine.py).
Format 2 (nudge/core/snapshot.py); format 1 was the bare list of emails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.records import Email, Erasure
from nudge.core.snapshot import check, stamp
from nudge.delivery.senders import sender_for

State = dict[str, Any]  # {"format": 2, "in_flight": [Email, ...]}
SNAPSHOT_FORMAT: Final = 2
_OLDER: Final = {1: lambda emails: stamp(2, {"in_flight": list(emails)})}  # the bare list


class _DeliveryPartition(StatefulSinkPartition[Email | Erasure, State]):
    def __init__(self, config: Config, dead_letters: Path | None,
                 resume: State | None, step: str = "deliver") -> None:
        state = check(step, resume, SNAPSHOT_FORMAT, _OLDER) if resume is not None else None
        self.pool = sender_for(config)
        d = config.delivery
        self.outbox_dir = d.outbox_dir if d.transport == "outbox" else None
        self.dead_path = dead_letters
        self.dead_topic: Any = None
        if dead_letters is not None:
            dead_letters.parent.mkdir(parents=True, exist_ok=True)
        else:  # outputs.dead_letters = "kafka": the same DLQ topic as bad input
            from nudge.kafka.sinks import DeadLetterWriter

            self.dead_topic = DeadLetterWriter(config.kafka, config.kafka.dead_letter_topic)
        for email in state["in_flight"] if state else ():  # in flight at the snapshot; the ledger
            self.pool.submit(email)  # skips those that were accepted before the crash

    def write_batch(self, values: list[Email | Erasure]) -> None:
        submit = self.pool.submit
        for item in values:
            if isinstance(item, Erasure):
                self._erase(item.customer_id)
            else:
                submit(item)

    def _erase(self, customer_id: str) -> None:
        self._report(self.pool.drain())  # nothing of theirs is written after this
        keys = self.pool.erase(customer_id)
        if self.outbox_dir is not None and keys:
            from nudge.delivery.outbox import erase_files

            erase_files(self.outbox_dir, keys)

    def _write_dead(self, dead: list[DeadLetter]) -> None:
        if dead and self.dead_topic is not None:
            self.dead_topic.write(dead)
        elif dead and self.dead_path is not None:
            with self.dead_path.open("ab") as f:
                for d in dead:
                    f.write(orjson.dumps(d.to_json()) + b"\n")

    def _report(self, dead: list[DeadLetter]) -> None:
        self._write_dead(dead)
        self.pool.reported(dead)  # written: emails in doubt are settled only now

    def snapshot(self) -> State:
        # No waiting for the ESP: what is still in flight is kept, and sent again on resume.
        self._report(self.pool.take_dead())
        return stamp(SNAPSHOT_FORMAT, {"in_flight": self.pool.pending()})

    def close(self) -> None:
        self._report(self.pool.drain())
        self._write_dead(self.pool.close())


class DeliverySink(FixedPartitionedSink[Email | Erasure, State]):
    """One partition: the ledger has one writer (RocksDB allows one process)."""

    def __init__(self, config: Config, dead_letters: Path | None) -> None:
        self.config = config
        self.dead_letters = dead_letters

    def list_parts(self) -> list[str]:
        return ["deliver"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str,
                   resume_state: State | None) -> _DeliveryPartition:
        return _DeliveryPartition(self.config, self.dead_letters, resume_state, step_id)
