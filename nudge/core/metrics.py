"""Prometheus counters, served by Bytewax's dataflow API (`BYTEWAX_DATAFLOW_API_ENABLED=1`,
port 3030 `/metrics`) because it includes prometheus_client's default registry.

Incremented once per batch, never per event: a labelled counter costs a lock per call.
docker/grafana/ has a dashboard of them, provisioned by docker/compose.yaml.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from nudge.core.records import Email

EVENTS = Counter("nudge_events_total", "Valid events parsed", ["partition"])
DEAD_LETTERS = Counter("nudge_dead_letters_total", "Records dead-lettered", ["stage", "reason"])
LATE = Counter("nudge_late_events_total",
               "Events older than the partition watermark, raised to it", ["partition"])
IGNORED = Counter("nudge_ignored_events_total",
                  "Calls accepted and not acted on (group, COUNTED_ONLY, events.ignore)",
                  ["partition"])
IGNORED_BY_NAME = Counter("nudge_ignored_calls_total",
                          "Calls accepted and not acted on, by event name or call type",
                          ["event"])
IDENTITY = Counter("nudge_identity_total",
                   "Identity: links, merges, merged events and refusals by reason", ["what"])
DUPLICATES = Counter("nudge_duplicate_events_total", "Repeated messageIds dropped", ["shard"])
DECISIONS = Counter("nudge_decisions_total", "Journey decisions", ["trigger", "outcome", "reason"])
SEGMENT_CHANGES = Counter("nudge_segment_changes_total", "Segment membership changes",
                          ["segment", "change"])
OUTCOMES = Counter("nudge_outcomes_total", "Attribution outcomes", ["trigger", "outcome"])

# Delivery, per email (emails are few beside events). `transport` is the transport's name.
EMAILS_SENT = Counter("nudge_emails_sent_total", "Emails a transport accepted",
                      ["transport", "trigger"])
EMAILS_FAILED = Counter("nudge_emails_failed_total",
                        "Emails dead-lettered at delivery (permanent_failure, retries_exhausted, "
                        "sender_error)", ["transport", "reason"])
SEND_RETRIES = Counter("nudge_send_retries_total", "Send attempts after an email's first",
                       ["transport"])
IN_FLIGHT = Gauge("nudge_emails_in_flight",
                  "Emails handed to delivery and not yet accepted or dead-lettered",
                  ["transport"])
DUE_TO_SENT = Histogram(
    "nudge_due_to_sent_seconds",
    "From an email's due time (event time) to its transport accepting it (wall clock): "
    "allowed lateness, queueing, retries and the transport itself",
    ["transport"],
    buckets=(0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600, 86_400))


def email_sent(transport: str, email: Email, attempts: int, now: float | None = None) -> None:
    """An accepted email: counted, its retries, and its lateness against its due time."""
    EMAILS_SENT.labels(transport, email.trigger).inc()
    if attempts > 1:
        SEND_RETRIES.labels(transport).inc(attempts - 1)
    wall = time.time() if now is None else now
    DUE_TO_SENT.labels(transport).observe(max(0.0, wall - email.due / 1000))


def email_failed(transport: str, reason: str, attempts: int) -> None:
    EMAILS_FAILED.labels(transport, reason).inc()
    if attempts > 1:
        SEND_RETRIES.labels(transport).inc(attempts - 1)


LINKS_REPLACED = Counter("nudge_links_replaced_total",
                        "Email links and images on hosts outside render.link_hosts, replaced "
                        "by the shop link or left out", ["trigger", "kind"])
CATALOG_REFUSED = Counter("nudge_catalog_refused_total",
                          "Catalog updates for new products refused at catalog.max_products")
