"""Prometheus metrics of `nudge serve`, summed over its worker processes.

Every worker writes its counters to memory-mapped files in one directory (prometheus_client's
multiprocess mode); `/metrics` on any worker reads them all. The directory is chosen by the
runner before the workers start.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self, directory: str) -> None:
        os.environ[ENV] = directory
        # metrics made from here on write to the shared files (the library picks the value
        # class when it is imported, which may have been before the directory was known)
        values.ValueClass = values.MultiProcessValue()
        self.directory = directory
        self.requests = Counter("nudge_serve_requests_total", "HTTP requests answered",
                                ["route", "status"], registry=None)
        self.latency = Histogram("nudge_serve_request_seconds", "Time to answer a request",
                                 ["route"], registry=None,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                          2.5, 10))
        self.messages = Counter("nudge_serve_messages_total",
                                "Collector messages: accepted (produced), ignored by the flow "
                                "(also produced) or rejected", ["outcome", "reason"],
                                registry=None)
        self.kafka_failures = Counter("nudge_serve_kafka_failures_total",
                                      "Requests answered 503: the broker did not acknowledge",
                                      ["cause"], registry=None)
        self.tracking = Counter("nudge_serve_tracking_total",
                                "Opens, clicks and unsubscribes recorded",
                                ["kind", "machine"], registry=None)
        self.refused = Counter("nudge_serve_tokens_refused_total",
                               "Tracking and unsubscribe tokens refused", ["reason"],
                               registry=None)
        self.webhooks = Counter("nudge_serve_webhook_events_total", "ESP webhook events",
                                ["provider", "event"], registry=None)

    def exposition(self) -> bytes:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)
        return generate_latest(registry)
