"""Reading dead letters back and deciding what a replay does with each (`nudge deadletters
replay`; the writing side is nudge/app/refeed.py).

Dead letters live in two places: JSON lines (`outputs.dead_letters`, plus its
`.delivery.jsonl` sibling for failed sends) or the Kafka topic `kafka.dead_letter_topic`
(the original value, Kafka Connect style headers). Either way each one becomes a `Stored`
(the DeadLetter, whether its bytes are exact, and where the dead letter itself sits), and
`plan` sorts it into exactly one bucket of the `Report`:

    not stage "parse"       reported, never re-fed: a render or delivery failure is a
                            decision whose email failed, not input
    unrecoverable           no source position, bytes not provably the original, from a
                            topic other than `kafka.topic`, or a partition that is gone
    already re-fed          its origin is in the replay store (nudge/state/replayed.py)
    still failing           the current parser still rejects it: skipped, not recorded, so
                            a later fix can still bring it back
    now ignored             `events.ignore` lists its name: recorded as handled, not re-fed
    re-fed                  parses now: goes back into the input it came from

Only the parse contract is used: `parse_record(raw, limits, offset)`, `Limits.from_config`,
`InputError` (`.reason`) and `Ignored`.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.errors import InputError, NudgeError
from nudge.core.events import Position
from nudge.core.timefmt import to_iso
from nudge.flows.parse import Ignored, Limits, Refused, parse_record
from nudge.state.replayed import ReplayStore, letter_key

FIRST = 3  # source positions shown per reason in the summary

# Reasons under which the old line format may have lost bytes: only a record that is not
# valid UTF-8 loses them, and the parser gives such a record one of these two reasons
# (orjson refuses invalid UTF-8, and the size check comes first). A line with any other
# reason is exact even if it contains text that looks like a `\xNN` escape.
_LOSSY_REASONS = frozenset({"invalid_utf8", "payload_too_large"})


@dataclass(frozen=True, slots=True)
class Stored:
    """A dead letter as read back: the record, whether `raw` is the original bytes, and
    where the dead letter itself is (`dead-letters.jsonl:12`, `nudge-dlq[0]@5`)."""

    letter: DeadLetter
    exact: bool
    where: str


@dataclass(frozen=True, slots=True)
class Unreadable:
    where: str
    problem: str


@dataclass(frozen=True, slots=True)
class Refeed:
    """A dead letter that parses now, and what re-feeding it needs."""

    key: str
    position: Position
    raw: bytes
    customer_id: str  # the partition key for Kafka; never printed (nudge.core.ids.log_id)
    ts: int
    reason: str  # the reason it was dead-lettered

    @property
    def kafka(self) -> bool:
        return self.position.partition >= 0


@dataclass
class Report:
    sources: list[str] = field(default_factory=list)
    read: int = 0
    refeed: list[Refeed] = field(default_factory=list)
    ignored: dict[str, dict[str, object]] = field(default_factory=dict)
    already: collections.Counter[str] = field(default_factory=collections.Counter)
    repeated: int = 0  # the same record twice among the dead letters (at-least-once sinks)
    still: collections.Counter[str] = field(default_factory=collections.Counter)
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)
    other: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    first: dict[str, list[str]] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)  # target -> records re-fed
    notes: list[str] = field(default_factory=list)

    def example(self, bucket: str, where: str) -> None:
        shown = self.first.setdefault(bucket, [])
        if len(shown) < FIRST:
            shown.append(where)


# -- reading ----------------------------------------------------------------------------


def read_file(path: Path) -> Iterator[Stored | Unreadable]:
    """Dead-letter JSON lines, both formats (nudge.core.records.DeadLetter.from_json)."""
    try:
        f = path.open("rb")
    except OSError as exc:
        raise NudgeError(f"dead letters file {path}: cannot read: {exc.strerror}") from None
    with f:
        for line_no, line in enumerate(f, start=1):
            where = f"{path}:{line_no}"
            if not line.strip():
                continue
            try:
                letter, exact = DeadLetter.from_json(orjson.loads(line))
            except (orjson.JSONDecodeError, ValueError) as exc:
                yield Unreadable(where, str(exc).splitlines()[0][:120])
                continue
            yield Stored(letter, exact or letter.reason not in _LOSSY_REASONS, where)


def from_headers(value: bytes, headers: dict[str, bytes], where: str) -> Stored | Unreadable:
    """A record of the dead letter topic (nudge/kafka/producer.py:dead_letter_headers) back to a
    DeadLetter. The value is the original record, byte for byte."""
    try:
        topic = headers.get("__connect.errors.topic", b"").decode()
        partition = int(headers.get("__connect.errors.partition", b"-1"))
        offset = int(headers.get("__connect.errors.offset", b"-1"))
        reason = headers["__connect.errors.exception.class.name"].decode()
        detail = headers.get("__connect.errors.exception.message", b"").decode(
            "utf-8", "replace")
        # Without our stage header the record came from some other writer: not ours to re-feed
        stage = headers.get("nudge.errors.stage", b"unknown").decode()
    except (KeyError, ValueError) as exc:
        return Unreadable(where, f"headers are not a dead letter's ({type(exc).__name__})")
    position = Position(topic, partition, offset) if topic and offset >= 0 else None
    return Stored(DeadLetter(stage, reason, detail, position, value), True, where)


def read_topic(config: Config) -> Iterator[Stored | Unreadable]:
    from nudge.kafka.source import read_topic as read_records

    topic = config.kafka.dead_letter_topic
    for rec in read_records(config.kafka, topic, config_key="kafka.dead_letter_topic"):
        yield from_headers(rec.value, rec.headers, f"{topic}[{rec.partition}]@{rec.offset}")


# -- deciding ---------------------------------------------------------------------------


def plan(letters: Iterable[Stored | Unreadable], config: Config, store: ReplayStore, *,
         now_ms: int, max_age: int | None = None) -> Report:
    """Sort every dead letter into one bucket (module docstring); nothing is written.
    `now_ms` is the one wall-clock read: the parser's bound on future timestamps, and
    `max_age`'s reference."""
    report = Report()
    limits = Limits.from_config(config.events, now_ms=now_ms, identity=config.identity)
    seen: set[str] = set()
    parts: set[int] | None = None  # kafka.topic's partitions, looked up when first needed
    for item in letters:
        report.read += 1
        if isinstance(item, Unreadable):
            report.skipped["unreadable"] += 1
            report.example("unreadable", f"{item.where} ({item.problem})")
            continue
        d = item.letter
        if d.stage != "parse":
            report.other[(d.stage, d.reason)] += 1
            report.example(f"stage {d.stage}", item.where)
            continue
        pos = d.position
        cause = ("no_position" if pos is None
                 else "bytes_not_recoverable" if not item.exact
                 # a shared dead letter topic may hold another pipeline's input
                 else "other_topic" if pos.partition >= 0 and pos.source != config.kafka.topic
                 else None)
        if pos is None or cause is not None:
            cause = cause or "no_position"
            report.skipped[cause] += 1
            report.example(cause, item.where)
            continue
        key = letter_key(pos, d.raw)
        if key in seen:
            report.repeated += 1
            continue
        seen.add(key)
        done = store.get(key)
        if done is not None:
            report.already[str(done.get("outcome", "refed"))] += 1
            continue
        try:
            event = parse_record(d.raw, limits, pos.offset)
        except Refused as exc:  # valid under its other identifier: re-fed as that
            event = exc.event
        except InputError as exc:
            report.still[exc.reason] += 1
            report.example(f"still {exc.reason}", pos.describe())
            continue
        except Ignored:
            report.ignored[key] = {"outcome": "ignored", "reason": d.reason,
                                   "from": pos.describe()}
            continue
        if max_age is not None and event.ts < now_ms - max_age:
            report.skipped["older_than_max_age"] += 1
            report.example("older_than_max_age", pos.describe())
            continue
        if pos.partition >= 0:
            if parts is None:
                from nudge.kafka.source import list_partitions

                parts = set(list_partitions(config.kafka))
            if pos.partition not in parts:
                report.skipped["partition_gone"] += 1
                report.example("partition_gone", pos.describe())
                continue
        report.refeed.append(Refeed(key, pos, d.raw, event.customer_id, event.ts, d.reason))
    return report


# -- telling ----------------------------------------------------------------------------

_SKIP_TEXT = {
    "unreadable": "not a dead letter line or record",
    "no_position": "no source position",
    "bytes_not_recoverable": "old line format, bytes may differ from the original",
    "other_topic": "from a topic other than kafka.topic",
    "partition_gone": "kafka.topic no longer has that partition",
    "older_than_max_age": "older than --max-age (not recorded: a later run can take them)",
}


def format_report(r: Report, *, dry_run: bool) -> str:
    would = "would be " if dry_run else ""
    parse_letters = (len(r.refeed) + len(r.ignored) + r.already.total() + r.repeated
                     + sum(r.still.values()) + sum(r.skipped.values())
                     - r.skipped["unreadable"])

    def row(label: str, n: int, note: str = "") -> str:
        return f"  {label:<16}{n:>8}   {note}".rstrip()

    lines = [f"dead letters read: {r.read} ({', '.join(r.sources)})",
             f"parse dead letters: {parse_letters}",
             row("re-fed", len(r.refeed), "(dry run: nothing re-fed)" if dry_run else "")]
    for target, n in sorted(r.written.items()):
        lines.append(f"  {'':<16}{n:>8}   -> {target}")
    if r.refeed:
        lines.append(f"  {'':<27}oldest event time {to_iso(min(x.ts for x in r.refeed))}")
    lines += [row("already re-fed", r.already["refed"],
                  "(by an earlier run: never re-fed twice)"),
              row("now ignored", len(r.ignored), f"(events.ignore; {would}recorded as handled)")]
    if r.already["ignored"]:
        lines.append(row("already ignored", r.already["ignored"], "(by an earlier run)"))
    if r.repeated:
        lines.append(row("repeated", r.repeated, "(the same record twice among the dead "
                                                 "letters: re-fed once)"))
    lines.append(row("still failing", sum(r.still.values()),
                     "(skipped, not recorded: re-run after the next fix)"))
    if r.still:
        lines.append(f"      {'reason':<24}{'count':>7}  first source positions")
        for reason, n in sorted(r.still.items(), key=lambda kv: (-kv[1], kv[0])):
            shown = ", ".join(r.first.get(f"still {reason}", []))
            lines.append(f"      {reason:<24}{n:>7}  {shown}")
    for cause, n in sorted(r.skipped.items()):
        lines.append(row("skipped", n, f"({_SKIP_TEXT.get(cause, cause)}) "
                                       f"{', '.join(r.first.get(cause, []))}"))
    if r.other:
        lines.append(f"render/deliver dead letters (not input, not re-fed: see --help): "
                     f"{r.other.total()}")
        for (stage, reason), n in sorted(r.other.items()):
            lines.append(f"      {stage:<8}{reason:<24}{n:>7}  "
                         f"{', '.join(r.first.get(f'stage {stage}', []))}")
    lines.extend(r.notes)
    if dry_run:
        lines.append("dry run: nothing was written, produced or recorded")
    return "\n".join(lines)
