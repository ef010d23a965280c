"""`nudge deadletters replay`: put dead letters that parse now back into their input, and
record them so that no later run re-feeds them again (reading and deciding:
nudge/app/deadletters.py).

Where a record goes depends on where it came from, not on where its dead letter is kept:

- **Kafka** (source position with a partition): produced to `kafka.topic`, into the
  partition it was read from, keyed by the customer id (userId, else anonymousId). The
  original partition rather than the key's hash: producers differ in their partitioners
  (Java and kafka-python use murmur2, librdkafka crc32, sarama FNV), and the partition the
  record was in is the one that holds the customer's other events. Produced in offset order
  per partition; each batch is flushed before it is recorded, so a crash can repeat at most
  one batch, and the dataflow drops a repeated messageId within `events.dedup_window`.
- **Files** (a file and a line): one replay file per source file (`<stem>.replay.jsonl`)
  in a new directory per run, lines in their original order. Files are partitions: one
  customer's events are in one source file, so they stay in one replay file, and all replay
  files of a run can be replayed together. A run never appends to a replay file an earlier
  run wrote (that one may have been replayed already). Two-step commit: `*.partial` files,
  one atomic store batch (the handled dead letters and the run's file list), then the
  renames; a crash in between is finished by the next run (nudge/state/replayed.py).
"""

from __future__ import annotations

import collections
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nudge.app.deadletters import Refeed, Report
from nudge.core.config import Config
from nudge.core.errors import DeliveryError, NudgeError
from nudge.flows.parse import Limits, parse_record
from nudge.state.replayed import ReplayStore

KAFKA_BATCH = 500
REPLAY_HEADER = "nudge.replay.of"  # on re-fed Kafka records: the original position


def _handled(r: Refeed, to: str) -> dict[str, Any]:
    # audit only: `at` is when it was re-fed; nothing decides on it
    return {"outcome": "refed", "reason": r.reason, "from": r.position.describe(), "to": to,
            "at": int(time.time() * 1000)}


# -- Kafka ------------------------------------------------------------------------------


def feed_kafka(records: list[Refeed], config: Config, store: ReplayStore, report: Report,
               *, dry_run: bool) -> None:
    topic = config.kafka.topic
    by_part: dict[int, list[Refeed]] = collections.defaultdict(list)
    for r in records:
        by_part[r.position.partition].append(r)
    if dry_run:
        for part, recs in sorted(by_part.items()):
            report.written[f"{topic}[{part}]"] = len(recs)
        return

    from nudge.kafka.producer import KafkaProducerClient

    client = KafkaProducerClient(config.kafka)
    batch: list[tuple[Refeed, str]] = []

    def commit() -> None:
        # Recorded only once the broker has them all (acks=all): a crash or failure before
        # this re-feeds the batch next run, and never loses a record.
        client.flush()
        store.commit({r.key: _handled(r, target) for r, target in batch})
        for _, target in batch:
            report.written[target] = report.written.get(target, 0) + 1
        batch.clear()

    try:
        for part in sorted(by_part):
            target = f"{topic}[{part}]"
            # offset order: the order the customer's events had in the partition
            for r in sorted(by_part[part], key=lambda x: x.position.offset):
                client.produce(topic, r.customer_id.encode(), r.raw,
                               [(REPLAY_HEADER, r.position.describe().encode())],
                               partition=part)
                batch.append((r, target))
                if len(batch) >= KAFKA_BATCH:
                    commit()
        if batch:
            commit()
    except DeliveryError as exc:
        done = sum(report.written.values())
        raise NudgeError(
            f"kafka topic {topic} (kafka.topic) on {','.join(config.kafka.brokers)}: {exc}. "
            f"{done} records were re-fed and recorded; the {len(batch)} of the failed batch "
            "are not recorded, so the next run re-feeds them (copies that did arrive are "
            "dropped by messageId within events.dedup_window).") from None


# -- files ------------------------------------------------------------------------------


def one_line(raw: bytes, config: Config) -> bytes:
    """The record as one JSONL line. A record that parses can hold CR or LF only as
    whitespace between tokens (JSON strings cannot contain them unescaped), so turning them
    into spaces changes no value and keeps the length; checked by parsing again. Records
    read from files never hold LF; a trailing CR would be eaten by the file source."""
    if b"\n" not in raw and b"\r" not in raw:
        return raw
    line = raw.replace(b"\r", b" ").replace(b"\n", b" ")
    limits = Limits.from_config(config.events, now_ms=int(time.time() * 1000),
                                identity=config.identity)
    if parse_record(line, limits) != parse_record(raw, limits):
        raise NudgeError("internal: a record changed when its line breaks became spaces")
    return line


def run_dir(config: Config, out: str | None) -> tuple[str, Path]:
    """A run id and the directory for this run's replay files (new unless `--out` names
    one; an existing one must not hold any file this run would write)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if out is not None:
        return f"{stamp}-{os.getpid()}", Path(out)
    base = Path(config.dead_letter_replay.out_dir)
    for n in range(1, 1000):
        name = stamp if n == 1 else f"{stamp}-{n}"
        if not (base / name).exists():
            return name, base / name
    raise NudgeError(f"config dead_letter_replay.out_dir: {base}: no free run directory")


def file_names(records: list[Refeed]) -> dict[str, str]:
    """Source file (as recorded) -> replay file name, `<stem>.replay.jsonl`, with a short
    digest when two sources share a name. Not the source's own name: dead letters of a
    replay file then never share a file name (part of their key) with the originals."""
    import hashlib

    sources = sorted({r.position.source for r in records})
    stems = collections.Counter(Path(s).stem for s in sources)
    out = {}
    for s in sources:
        stem = Path(s).stem
        if stems[stem] > 1:
            stem += "-" + hashlib.blake2b(s.encode(), digest_size=3).hexdigest()
        out[s] = f"{stem}.replay.jsonl"
    return out


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def feed_files(records: list[Refeed], config: Config, store: ReplayStore, report: Report,
               *, out: str | None, dry_run: bool) -> list[Path]:
    """Write the replay files and commit; returns them (in dry runs: the would-be paths)."""
    run_id, directory = run_dir(config, out)
    names = file_names(records)
    by_source: dict[str, list[Refeed]] = collections.defaultdict(list)
    for r in records:
        by_source[r.position.source].append(r)
    finals = {s: directory / names[s] for s in by_source}
    for s, path in sorted(finals.items()):
        report.written[f"{path}  (from {s})"] = len(by_source[s])
    if dry_run:
        return sorted(finals.values())
    for path in finals.values():
        if path.exists():
            raise NudgeError(f"replay file {path} exists: replay files are never appended to "
                             "(an earlier one may have been replayed already); choose a new "
                             "--out or leave it out for a new run directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handled: dict[str, dict[str, Any]] = {}
        for s, path in finals.items():
            partial = path.with_name(path.name + ".partial")
            with partial.open("wb") as f:  # a partial file of a crashed run was never recorded
                for r in sorted(by_source[s], key=lambda x: x.position.offset):
                    f.write(one_line(r.raw, config) + b"\n")
                    handled[r.key] = _handled(r, str(path))
                f.flush()
                os.fsync(f.fileno())
        _fsync_dir(directory)  # the partial files must outlive a crash once committed
        store.commit(handled, (run_id, {"files": [str(p) for p in finals.values()]}))
        finish(run_id, [str(p) for p in finals.values()], store)
    except OSError as exc:
        raise NudgeError(f"replay directory {directory}: {exc.strerror} "
                         f"({exc.filename or directory})") from None
    return sorted(finals.values())


def finish(run_id: str, files: list[str], store: ReplayStore) -> int:
    """Rename a committed run's partial files into place; returns how many were renamed."""
    renamed = 0
    dirs = set()
    for name in files:
        final = Path(name)
        partial = final.with_name(final.name + ".partial")
        if partial.exists() and not final.exists():
            partial.rename(final)
            renamed += 1
            dirs.add(final.parent)
    for d in dirs:
        _fsync_dir(d)
    store.finish_run(run_id)
    return renamed


def finish_interrupted(store: ReplayStore) -> list[str]:
    """Complete runs that crashed after their commit: their dead letters are recorded as
    re-fed, so their replay files must exist."""
    notes = []
    for run_id, entry in store.pending_runs():
        files = [str(f) for f in entry.get("files", [])]
        n = finish(run_id, files, store)
        if n:
            notes.append(f"finished interrupted run {run_id}: {n} replay files renamed into "
                         f"place ({', '.join(files)})")
    return notes


# -- the command ------------------------------------------------------------------------


def replay_dead_letters(config: Config, *, from_file: str | None = None,
                        from_topic: bool = False, out: str | None = None,
                        dry_run: bool = False, max_age: int | None = None,
                        now_ms: int | None = None) -> tuple[Report, list[Path]]:
    """Re-feed the dead letters that parse with `config` now; returns the report and the
    replay files written (or, in a dry run, that would be)."""
    from itertools import chain

    from nudge.app.deadletters import plan, read_file, read_topic

    now = int(time.time() * 1000) if now_ms is None else now_ms
    use_topic = from_topic or (from_file is None and config.outputs.dead_letters == "kafka")
    store = ReplayStore(config.dead_letter_replay.state_dir, read_only=dry_run)
    try:
        notes = [] if dry_run else finish_interrupted(store)
        if use_topic:
            letters: Any = read_topic(config)
            sources = [f"topic {config.kafka.dead_letter_topic} (kafka.dead_letter_topic)"]
        else:
            path = Path(from_file or config.outputs.dead_letters)
            if not path.is_file():
                where = "--from" if from_file else "config outputs.dead_letters"
                raise NudgeError(f"dead letters file {path} ({where}): not found")
            paths = [path]
            delivery = path.with_suffix(".delivery.jsonl")
            if delivery != path and delivery.is_file():
                paths.append(delivery)  # failed sends: reported, never re-fed
            letters = chain.from_iterable(read_file(p) for p in paths)
            sources = [str(p) for p in paths]
        report = plan(letters, config, store, now_ms=now, max_age=max_age)
        report.sources = sources
        report.notes = notes
        files = [r for r in report.refeed if not r.kafka]
        written = feed_files(files, config, store, report, out=out,
                             dry_run=dry_run) if files else []
        kafka = [r for r in report.refeed if r.kafka]
        if kafka:
            feed_kafka(kafka, config, store, report, dry_run=dry_run)
        if report.ignored and not dry_run:
            store.commit(report.ignored)
    finally:
        store.close()
    return report, written
