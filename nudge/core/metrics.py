"""Prometheus counters, served by Bytewax's dataflow API (`BYTEWAX_DATAFLOW_API_ENABLED=1`,
port 3030 `/metrics`) because it includes prometheus_client's default registry.

Incremented once per batch, never per event: a labelled counter costs a lock per call.
"""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter("nudge_events_total", "Valid events parsed", ["partition"])
DEAD_LETTERS = Counter("nudge_dead_letters_total", "Records dead-lettered", ["stage", "reason"])
LATE = Counter("nudge_late_events_total",
               "Events older than the partition watermark, raised to it", ["partition"])
IGNORED = Counter("nudge_ignored_events_total", "Events named in events.ignore", ["partition"])
DUPLICATES = Counter("nudge_duplicate_events_total", "Repeated messageIds dropped", ["shard"])
DECISIONS = Counter("nudge_decisions_total", "Journey decisions", ["trigger", "outcome", "reason"])
SEGMENT_CHANGES = Counter("nudge_segment_changes_total", "Segment membership changes",
                          ["segment", "change"])
OUTCOMES = Counter("nudge_outcomes_total", "Attribution outcomes", ["trigger", "outcome"])
