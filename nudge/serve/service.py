"""The service behind every route of `nudge serve`: the collector, health and readiness,
metrics, and the one way anything reaches Kafka (`produce`, which returns only once the
broker acknowledged every record).

Handlers take an Incoming and return an Outgoing (nudge/serve/http.py); nudge/serve/asgi.py
puts them behind Starlette.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from nudge.core.config import Config
from nudge.core.keyring import Keyring, load_keyring
from nudge.kafka.acked import AckedProducer, QueueFull
from nudge.serve import http
from nudge.serve.collector import Collector, Record, RequestError, authorized, write_key
from nudge.serve.http import Unavailable
from nudge.serve.metrics import Metrics
from nudge.serve.tracking import Tracking
from nudge.serve.webhooks import Webhooks

log = logging.getLogger("nudge.serve")

COLLECTOR_KINDS = {"track": "track", "identify": "identify", "page": "page", "screen": "screen",
                   "group": "group", "alias": "alias", "batch": "batch", "b": "batch"}


def is_machine(agent: str, agents: tuple[str, ...]) -> bool:
    """A link scanner or mail-privacy proxy (`tracking.machine_agents`), or no agent at all."""
    low = agent.lower()
    return not low or any(a in low for a in agents)


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body, refusing more than `limit` bytes unpacked (a small bomb is still a bomb)."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise RequestError(400, "invalid_gzip", f"body is not gzip: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise RequestError(413, "payload_too_large", f"more than {limit} bytes unpacked")
    return out


class Service:
    def __init__(self, config: Config, metrics: Metrics, *,
                 write_keys: tuple[str, ...] | None = None,
                 keyring: Keyring | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.topic = config.serve.topic or config.kafka.topic
        if write_keys is None:
            raw = os.environ.get(config.serve.write_keys_env, "")
            write_keys = tuple(k.strip() for k in raw.split(",") if k.strip())
        self.write_keys = write_keys
        self.collector = Collector(config.events, max_message=config.serve.max_message_bytes)
        self.producer: AckedProducer | None = None
        self.stopping = False
        agents = config.tracking.machine_agents
        self.webhooks = Webhooks(config, metrics, lambda records: self.produce(self.topic,
                                                                               records),
                                 lambda agent: bool(agent) and is_machine(agent, agents))
        self.tracking = Tracking(config, metrics, keyring or load_keyring(config.secrets),
                                 lambda records: self.produce(self.topic, records),
                                 lambda agent: is_machine(agent, agents))

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        self.producer = AckedProducer(self.config.kafka)
        log.info("serving", extra={"topic": self.topic, "pid": os.getpid()})

    def stop(self) -> None:
        """After the server stopped taking requests: every accepted record to the broker."""
        self.stopping = True
        if self.producer is not None:
            left = self.producer.close(self.config.serve.shutdown_timeout / 1000)
            log.info("stopped", extra={"unacknowledged": left, "pid": os.getpid()})

    # -- Kafka --------------------------------------------------------------------------

    async def produce(self, topic: str, records: Sequence[Record]) -> None:
        """Returns once the broker acknowledged every record; raises Unavailable if it
        refused one, did not answer within `serve.ack_timeout`, or the queue is full."""
        assert self.producer is not None, "Service.start() not called"
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str | None] = loop.create_future()

        def resolve(error: str | None) -> None:
            if not fut.done():
                fut.set_result(error)

        def done(error: str | None) -> None:
            loop.call_soon_threadsafe(resolve, error)

        try:
            self.producer.send(topic, [(r.key, r.value, r.headers()) for r in records], done)
        except QueueFull as exc:
            self.metrics.kafka_failures.labels("queue_full").inc()
            raise Unavailable(str(exc)) from None
        try:
            error = await asyncio.wait_for(fut, self.config.serve.ack_timeout / 1000)
        except TimeoutError:
            self.metrics.kafka_failures.labels("timeout").inc()
            raise Unavailable("the broker did not acknowledge in time") from None
        if error is not None:
            self.metrics.kafka_failures.labels("refused").inc()
            log.warning("kafka refused a request's records", extra={"error": error})
            raise Unavailable(error)

    # -- the collector ------------------------------------------------------------------

    async def collect(self, req: http.Incoming) -> http.Outgoing:
        kind = COLLECTOR_KINDS.get(req.params["kind"])
        if kind is None:
            return http.error(404, "not_found", "no such collector endpoint")
        try:
            body = req.body
            encoding = (req.header("content-encoding") or "").lower()
            if encoding == "gzip":
                body = gunzip(body, self.config.serve.max_batch_bytes)
            elif encoding not in ("", "identity"):
                raise RequestError(415, "unsupported_encoding",
                                   f"Content-Encoding {encoding!r:.20} (use gzip or none)")
            limit = (self.config.serve.max_batch_bytes if kind == "batch"
                     else self.config.serve.max_message_bytes)
            if len(body) > limit:
                raise RequestError(413, "payload_too_large", f"{len(body)} bytes (max {limit})")
            try:
                doc: Any = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise RequestError(400, "invalid_json", "the body is not valid JSON") from None
            if not authorized(write_key(req.header("authorization"), doc), self.write_keys):
                raise RequestError(401, "unauthorized", "missing or unknown write key "
                                   "(the Basic-auth user)")
            out = self.collector.collect(kind, doc, now_ms=int(time.time() * 1000))
        except RequestError as exc:
            self.metrics.messages.labels("rejected", exc.code).inc()
            return http.error(exc.status, exc.code, exc.message)
        for r in out.rejected:
            self.metrics.messages.labels("rejected", r.reason).inc()
        if out.records:
            try:
                await self.produce(self.topic, out.records)
            except Unavailable as exc:
                return http.error(503, "unavailable", f"not stored, retry: {exc}",
                                  **{"Retry-After": "1"})
            self.metrics.messages.labels("accepted", "").inc(len(out.records) - out.ignored)
            if out.ignored:
                self.metrics.messages.labels("ignored", "").inc(out.ignored)
        if not out.rejected:
            return http.json(200, {"success": True})
        if kind != "batch":
            r = out.rejected[0]
            return http.error(400, r.reason, r.detail)
        return http.json(200, {"success": True, "accepted": len(out.records),
                               "rejected": [dataclasses.asdict(r) for r in out.rejected]})

    # -- operations ---------------------------------------------------------------------

    async def health(self, _req: http.Incoming) -> http.Outgoing:
        return http.json(200, {"status": "ok"})

    async def ready(self, _req: http.Incoming) -> http.Outgoing:
        """Ready when not shutting down and the broker lists the topic."""
        if self.stopping or self.producer is None:
            return http.json(503, {"status": "stopping"})
        producer = self.producer
        try:
            topics = await asyncio.to_thread(producer.topics, 2.0)
        except Exception as exc:
            return http.json(503, {"status": "kafka unavailable", "error": str(exc)[:200]})
        if self.topic not in topics:
            return http.json(503, {"status": f"topic {self.topic} not found"})
        return http.json(200, {"status": "ready"})

    async def prometheus(self, _req: http.Incoming) -> http.Outgoing:
        return http.Outgoing(200, self.metrics.exposition(),
                             "text/plain; version=0.0.4; charset=utf-8")
