"""Kafka as a partitioned source with in-band watermark heartbeats (consumer side of
confluent-kafka; the only module that imports it for consuming).

Like Bytewax's own KafkaSource: one Bytewax partition per Kafka partition, `assign()` (no
consumer group: the position lives in Bytewax's snapshot), resume from the snapshotted
offset (format 2, nudge/core/snapshot.py; format 1 was the bare offset). Unlike it: each
batch becomes one RawChunk (records with their offsets), and a partition that is caught up
and idle emits heartbeat chunks so event time keeps moving in live mode (docs/design.md,
"Idle live partitions").

"Caught up" is judged by the partition-EOF event librdkafka sends when a fetch reaches the
end of the log, never by comparing with `get_watermark_offsets` (which some brokers
under-report). A heartbeat is sent only when the last fetch came back empty *and* the
partition is at EOF, so during catch-up the watermark comes from the data alone.

Broker trouble: transient errors (broker down, transport failures) are retried by
librdkafka, which reports them through its error callback (not as messages); this source
logs a warning naming the brokers, topic and partition when an outage starts and again
every 30 s while it lasts, and keeps polling. While it lasts the partition is not caught
up: no heartbeats, so event time does not run ahead of records the broker may hold. A seek
to the next offset restarts the fetch, so the first answer after the outage (records, or
EOF on a quiet partition) ends it: "reading again" is logged and heartbeats resume. The
flow neither crashes nor stalls silently. Fatal errors (unknown topic, authorization)
raise SourceError. librdkafka's own log lines go through Python logging
(`nudge.kafka.librdkafka`), its per-reconnect connection failures at DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from nudge.core.config import EventsConfig, KafkaConfig
from nudge.core.errors import SourceError
from nudge.core.events import RawChunk
from nudge.core.snapshot import check, stamp
from nudge.kafka.client import consumer_config as _client_config

log = logging.getLogger(__name__)

Item = tuple[str, RawChunk]
_FATAL = {
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._AUTHENTICATION,
}
OUTAGE_LOG_EVERY_S = 30.0


def list_partitions(config: KafkaConfig, *, attempts: int = 5,
                    sleep: Callable[[float], None] = time.sleep,
                    topic_name: str | None = None, config_key: str = "kafka.topic") -> list[int]:
    """The partitions of `kafka.topic` (or `topic_name`, set by `config_key`); retried with
    backoff, then a SourceError saying what to check."""
    name = topic_name or config.topic
    admin = AdminClient(_client_config(config))
    last = ""
    for attempt in range(attempts):
        try:
            meta = admin.list_topics(name, timeout=5)
            topic = meta.topics.get(name)
            if topic is not None and topic.error is None and topic.partitions:
                return sorted(topic.partitions)
            last = str(topic.error) if topic is not None and topic.error else "no partitions"
            if topic is not None and topic.error is not None and \
                    topic.error.code() in _FATAL:
                break
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            last = err.str() if isinstance(err, KafkaError) else str(err)
        if attempt == attempts - 1:
            break
        delay = min(8.0, 0.5 * 2**attempt)
        log.warning("Kafka brokers %s: cannot list topic %r (%s); retrying in %.1f s",
                    ",".join(config.brokers), name, last, delay)
        sleep(delay)
    raise SourceError(
        f"kafka topic {name!r} on brokers {','.join(config.brokers)}: {last}. Check "
        f"that the brokers are reachable (kafka.brokers) and the topic exists ({config_key}).")


FIRST_OFFSET = 0  # where every Kafka partition's log starts
SNAPSHOT_FORMAT: Final = 2  # {"offset": the next offset to read}
_OLDER: Final = {1: lambda offset: stamp(2, {"offset": int(offset)})}  # the bare offset
State = dict[str, Any]


class _KafkaPartition(StatefulSourcePartition[Item, State]):
    def __init__(self, config: KafkaConfig, events: EventsConfig, partition: int,
                 n_parts: int, resume: State | None, tail: bool,
                 clock: Callable[[], float],
                 wrap: Callable[[Message], bytes] | None = None, step: str = "input") -> None:
        state = check(step, resume, SNAPSHOT_FORMAT, _OLDER) if resume is not None else None
        self._topic = config.topic
        self._wrap = wrap  # a record's bytes from its message, when more than the value
        self._brokers = ",".join(config.brokers)
        self._partition = partition
        self._key = f"{config.topic}/{partition}"
        self._n_parts = n_parts
        self._batch = config.batch_size
        self._tail = tail
        self._clock = clock
        self._lateness = events.allowed_lateness
        self._hb_every = events.heartbeat_interval / 1000
        self._last_hb = 0.0
        self._at_eof = False
        self._idle = False
        self._done = False
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._outage_error = ""
        self._outage_began = False  # since the last next_batch
        self._need_seek = False
        self._fatal: KafkaError | None = None
        self._started = False  # logged its first records (where it starts, when it resumes)
        conf = _client_config(config)
        conf.update({
            "group.id": "nudge-unused",  # required by librdkafka; assign() never joins it
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "error_cb": self._on_error,  # served inside consume(), in this thread
        })
        self._consumer = Consumer(conf)
        # A new run starts at offset 0, not at OFFSET_BEGINNING: librdkafka resolves a
        # logical offset with a ListOffsets request it sends ~0.5 s after connecting
        # (measured on the test broker: first records after 516 ms, against 16 ms). A log
        # whose start retention has moved past 0 answers out of range, and
        # auto.offset.reset=earliest then does what OFFSET_BEGINNING would.
        self._offset: int = FIRST_OFFSET if state is None else state["offset"]
        self._consumer.assign([TopicPartition(config.topic, partition, self._offset)])

    def _chunk(self, records: list[tuple[int, bytes]], *, heartbeat: int | None = None,
               final: bool = False) -> list[Item]:
        return [(self._key, RawChunk(self._key, self._n_parts, self._topic, self._partition,
                                     records, heartbeat, final))]

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka's error callback: broker down, transport failures (client-wide)."""
        if err.fatal() or err.code() in _FATAL:
            self._fatal = self._fatal or err
        else:
            self._transient(err)

    def _transient(self, err: KafkaError) -> None:
        self._outage_error = err.str()
        if self._outage_since is None:
            now = self._clock()
            self._outage_since = now
            self._outage_logged = now
            self._outage_began = True
            log.warning("Kafka %s topic %s partition %d: %s; retrying (librdkafka backoff)",
                        self._brokers, self._topic, self._partition, err.str())

    def _still_failing(self) -> None:
        """Repeat the warning while the outage lasts. Driven by this source's own polls, not
        by librdkafka's error callback, which may stay silent between reconnect attempts."""
        now = self._clock()
        if self._outage_since is not None and now - self._outage_logged >= OUTAGE_LOG_EVERY_S:
            self._outage_logged = now
            log.warning("Kafka %s topic %s partition %d: still failing after %.0f s: %s",
                        self._brokers, self._topic, self._partition,
                        now - self._outage_since, self._outage_error)

    def next_batch(self) -> list[Item]:
        if self._done:
            raise StopIteration
        # What is already fetched, at once; only an empty queue waits (50 ms, so an idle
        # partition does not spin). Waiting for a full batch held up every partition's
        # tail and the replay's start by up to 50 ms a poll.
        msgs = self._consumer.consume(self._batch, 0) or self._consumer.consume(self._batch, 0.05)
        records: list[tuple[int, bytes]] = []
        eof = False
        values = list(map(Message.value, msgs))
        if self._wrap is None and msgs and not any(map(Message.error, msgs)) \
                and None not in values:
            # The usual batch, records only: read in C, without a Python step per message.
            offsets = list(map(Message.offset, msgs))
            records = list(zip(offsets, values, strict=True))  # type: ignore[arg-type]
            self._offset = (offsets[-1] or 0) + 1
            msgs = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof = True
                    continue
                if err.fatal() or err.code() in _FATAL:
                    self._fatal = self._fatal or err
                    continue
                self._transient(err)
                continue
            offset = msg.offset() or 0
            records.append((offset, self._wrap(msg) if self._wrap is not None
                            else msg.value() or b""))
            self._offset = offset + 1
        if self._fatal is not None:
            raise SourceError(f"kafka topic {self._topic} partition {self._partition} "
                              f"on {self._brokers}: {self._fatal.str()}")
        if self._outage_began:
            # Not caught up while the broker is away (an EOF in this batch predates it).
            self._outage_began = False
            self._at_eof = eof = False
            self._need_seek = True
        elif self._outage_since is not None and (records or eof):
            log.info("Kafka %s topic %s partition %d: reading again after %.0f s",
                     self._brokers, self._topic, self._partition,
                     self._clock() - self._outage_since)
            self._outage_since = None
        elif self._outage_since is not None:
            self._still_failing()
        if self._need_seek:
            # Restart the fetch at the next offset (after every record returned so far):
            # librdkafka sends no second EOF at an unchanged end, so without this a quiet
            # partition would never be caught up again after the outage.
            try:
                self._consumer.seek(TopicPartition(self._topic, self._partition,
                                                   self._offset))
                self._need_seek = False
            except KafkaException as exc:
                log.debug("Kafka topic %s partition %d: seek to %d failed (%s); will retry",
                          self._topic, self._partition, self._offset, exc)
        if records and not self._started:
            self._started = True
            log.info("Kafka topic %s partition %d: first records from offset %d",
                     self._topic, self._partition, records[0][0])
        if records:
            # librdkafka reports EOF again each time it reaches the end after new records
            self._at_eof = eof
            self._idle = False
        else:
            self._at_eof = self._at_eof or eof
            # Idle only when caught up: a partition still waiting for its first fetch (or
            # for the broker) is polled again at once; its consume() blocks, so no spin.
            self._idle = self._at_eof
        if not self._tail and self._at_eof:
            self._done = True
            return self._chunk(records, final=True)
        if records:
            return self._chunk(records)
        if self._tail and self._at_eof:
            now = self._clock()
            if now - self._last_hb >= self._hb_every:
                self._last_hb = now
                return self._chunk([], heartbeat=int(now * 1000) - self._lateness)
        return []

    def next_awake(self) -> datetime | None:
        if self._idle:
            # Idle: come back for the next heartbeat instead of spinning.
            return datetime.now(UTC) + timedelta(seconds=self._hb_every / 2)
        return None

    def snapshot(self) -> State:
        return stamp(SNAPSHOT_FORMAT, {"offset": self._offset})

    def close(self) -> None:
        self._consumer.close()


class KafkaEventSource(FixedPartitionedSource[Item, State]):
    """Shop events from `kafka.topic`; `tail=False` reads to the end and stops (replay)."""

    topic_key = "kafka.topic"  # the config key naming the topic, for errors

    def __init__(self, config: KafkaConfig, events: EventsConfig, *, tail: bool | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.events = events
        self.tail = config.tail if tail is None else tail
        self.clock = clock
        self.wrap: Callable[[Message], bytes] | None = None  # a record's bytes, if not the value
        self._parts: list[int] | None = None

    def _partitions(self) -> list[int]:
        if self._parts is None:
            self._parts = list_partitions(self.config, config_key=self.topic_key)
        return self._parts

    def list_parts(self) -> list[str]:
        return [f"{self.config.topic}/{p}" for p in self._partitions()]

    def build_part(self, step_id: str, for_part: str,
                   resume_state: State | None) -> _KafkaPartition:
        topic, _, part = for_part.rpartition("/")
        if topic != self.config.topic:
            raise SourceError(f"step {step_id}: recovery state is for topic {topic!r}, "
                              f"{self.topic_key} is {self.config.topic!r}; use a new "
                              "recovery.dir")
        return _KafkaPartition(self.config, self.events, int(part), len(self._partitions()),
                               resume_state, self.tail, self.clock, self.wrap, step_id)


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def read_topic(config: KafkaConfig, topic: str, *, config_key: str,
               idle_timeout: float = 30.0) -> Iterator[TopicRecord]:
    """Every record of `topic`, from the beginning to its end now, partition by partition in
    offset order within each (a bounded read: assign() and partition EOF, as the source).

    Raises SourceError naming the topic (and `config_key`, the setting that names it) when it
    cannot be listed or a fetch fails for good, and when `idle_timeout` seconds pass with
    neither a record nor an end-of-partition: a partial read must never look complete.
    """
    parts = list_partitions(config, topic_name=topic, config_key=config_key)
    conf = _client_config(config)
    conf.update({"group.id": "nudge-unused", "enable.auto.commit": False,
                 "enable.partition.eof": True})
    consumer = Consumer(conf)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        done: set[int] = set()
        last_progress = time.monotonic()
        while len(done) < len(parts):
            msgs = consumer.consume(500, 0.5)
            for msg in msgs:
                err = msg.error()
                part = msg.partition() or 0
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done.add(part)
                    elif err.fatal() or err.code() in _FATAL:
                        raise SourceError(f"kafka topic {topic} ({config_key}) partition "
                                          f"{part} on {','.join(config.brokers)}: {err.str()}")
                    else:
                        log.warning("Kafka topic %s partition %d: %s; retrying", topic, part,
                                    err.str())
                    continue
                raw_headers = msg.headers() or []
                pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
                headers = {name: value.encode() if isinstance(value, str) else value or b""
                           for name, value in pairs}
                key = msg.key()
                yield TopicRecord(part, msg.offset() or 0,
                                  key if isinstance(key, bytes) else None,
                                  msg.value() or b"", headers)
            if msgs:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > idle_timeout:
                missing = sorted(set(parts) - done)
                raise SourceError(f"kafka topic {topic} ({config_key}) on "
                                  f"{','.join(config.brokers)}: partitions {missing} gave "
                                  f"nothing for {idle_timeout:.0f} s before their end")
    finally:
        consumer.close()
