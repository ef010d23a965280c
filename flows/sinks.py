"""Where decisions, segment changes, outcomes and dead letters go: JSONL files (resumable)
or Kafka topics.

File sinks are Bytewax's FileSink: on resume it truncates the file to the snapshotted
length, so a crash-and-resume run writes exactly the lines of an uninterrupted one.
Topic sinks are at-least-once (a resume may repeat the lines after the last snapshot);
consumers de-duplicate on (customer_id, trigger, episode, stage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from bytewax.connectors.files import FileSink

from nudge.config import Config
from nudge.records import DeadLetter, Decision, Outcome, SegmentChange
from nudge.timefmt import to_iso


def decision_json(d: Decision) -> dict[str, Any]:
    """One decision-log line (README "Decision log"); `variant` only for a stage with an
    experiment, so the lines of journeys without one keep their shape."""
    line: dict[str, Any] = {
        "customer_id": d.customer_id,
        "trigger": d.trigger,
        "episode": d.episode,
        "stage": d.stage,
        "due": to_iso(d.due),
        "outcome": d.outcome,
        "reason": d.reason,
    }
    if d.variant is not None:
        line["variant"] = d.variant
    return line


def segment_line(s: SegmentChange) -> str:
    return orjson.dumps({"customer_id": s.customer_id, "segment": s.segment,
                         "change": s.change, "at": to_iso(s.at)}).decode()


def outcome_line(o: Outcome) -> str:
    return orjson.dumps({"customer_id": o.customer_id, "trigger": o.trigger,
                         "episode": o.episode, "stage": o.stage, "decided": to_iso(o.decided),
                         "variant": o.variant, "arm": o.arm, "outcome": o.outcome,
                         "at": to_iso(o.at), "revenue": o.revenue}).decode()


def decision_line(d: Decision) -> str:
    return orjson.dumps(decision_json(d)).decode()


def dead_letter_line(d: DeadLetter) -> str:
    return orjson.dumps(d.to_json()).decode()


def file_sink(path: str | Path) -> FileSink:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return FileSink(p)


def decisions_sink(config: Config) -> Any:
    """Items: str lines (keyed for the file sink, raw for the topic sink)."""
    target = config.outputs.decisions
    if target == "kafka":
        from delivery.kafka import KafkaLinesSink

        return KafkaLinesSink(config.kafka, config.kafka.decisions_topic)
    return file_sink(target)


def lines_sink(config: Config, target: str, topic: str) -> Any:
    """JSON lines to a file, or to `topic` when the target is "kafka"."""
    if target == "kafka":
        from delivery.kafka import KafkaLinesSink

        return KafkaLinesSink(config.kafka, topic)
    return file_sink(target)


def dead_letters_sink(config: Config) -> Any:
    target = config.outputs.dead_letters
    if target == "kafka":
        from delivery.kafka import DeadLetterTopicSink

        return DeadLetterTopicSink(config.kafka, config.kafka.dead_letter_topic)
    return file_sink(target)
