"""The measured programs, each run in a child process of its own (`child`): baselines,
the hand-written loop, the dataflow in-process from a file, the consumer baselines."""

from __future__ import annotations

import contextlib
import os
import resource
import time
from pathlib import Path
from typing import Any, cast

DATA = Path("var/bench")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# -- the measured programs (each runs in its own child process) -------------------------


def baseline_loads(path: str) -> dict[str, float]:
    import orjson

    n = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            with contextlib.suppress(orjson.JSONDecodeError):
                orjson.loads(line)
            n += 1
    el = time.perf_counter() - t
    return {"events": n, "seconds": el, "rss_mb": _peak_rss_mb()}


def baseline_parse(path: str) -> dict[str, float]:
    from nudge.core.config import EventsConfig
    from nudge.core.errors import InputError
    from nudge.flows.contract import Ignored
    from nudge.flows.parse import Limits, parse_record

    limits = Limits.from_config(EventsConfig(), now_ms=int(time.time() * 1000))
    n = bad = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            try:
                parse_record(line.rstrip(b"\n"), limits, i)
            except InputError:
                bad += 1
            except Ignored:  # events.ignore (page views by default): parsed, then dropped
                pass
            n += 1
    el = time.perf_counter() - t
    return {"events": n, "seconds": el, "bad": bad, "rss_mb": _peak_rss_mb()}


class _HandLoop:
    """A single loop with the cart semantics and nothing else: the speed a team gets by
    writing a consumer by hand (no recovery, no scale-out, no validation beyond types)."""

    def __init__(self) -> None:
        import heapq

        import orjson

        from nudge.core.timefmt import HOUR, parse_iso

        self.loads, self.parse_iso, self.heappush, self.heappop = \
            orjson.loads, parse_iso, heapq.heappush, heapq.heappop
        self.hour = HOUR
        self.carts: dict[str, dict[str, int]] = {}
        self.due: dict[str, int] = {}
        self.consent: dict[str, bool] = {}
        self.timers: list[tuple[int, str]] = []
        self.sent = 0

    def feed(self, line: bytes) -> None:
        try:
            doc = self.loads(line)
            ts = self.parse_iso(doc["timestamp"])
            cid = doc.get("userId") or doc["anonymousId"]
        except Exception:
            return
        timers, due = self.timers, self.due
        while timers and timers[0][0] < ts - 60_000:
            d, c = self.heappop(timers)
            if due.get(c) == d:
                del due[c]
                self.sent += self.consent.get(c, False)
        name = doc.get("event")
        if doc.get("type") == "identify":
            self.consent[cid] = bool((doc.get("traits") or {}).get("marketing_consent"))
        elif name == "Product Added":
            self.carts.setdefault(cid, {})[doc["properties"]["product_id"]] = 1
            due[cid] = ts + self.hour
            self.heappush(timers, (ts + self.hour, cid))
        elif name == "Product Removed":
            cart = self.carts.get(cid)
            if cart is not None:
                cart.pop(doc["properties"]["product_id"], None)
                if not cart:
                    due.pop(cid, None)
        elif name == "Order Completed":
            self.carts.pop(cid, None)
            due.pop(cid, None)


def dedup_cost(path: str) -> dict[str, float]:
    """The shard's de-duplication alone, over the file's parsed events in event-time order
    and in the shard's batches: (customer, messageId) digests (what runs), and a dict keyed
    by the messageId string (the cost of keying by the id alone, for comparison)."""
    from nudge.core.config import EventsConfig
    from nudge.core.events import RawChunk
    from nudge.flows.parse import Limits, parse_chunk
    from nudge.state.dedup import MessageDedup

    cfg = EventsConfig()
    with open(path, "rb") as f:
        records = [(i, line.rstrip(b"\n")) for i, line in enumerate(f, 1)]
    limits = Limits.from_config(cfg, now_ms=int(time.time() * 1000))
    events, _, _ = parse_chunk(RawChunk("p", 1, path, -1, records), limits)
    events.sort(key=lambda e: e.ts)
    batches = [events[i:i + 10_000] for i in range(0, len(events), 10_000)]
    dedup = MessageDedup(cfg.dedup_window)
    t = time.perf_counter()
    kept = sum(len(dedup.unique(b)) for b in batches)
    el = time.perf_counter() - t
    by_id: dict[str, int] = {}
    t = time.perf_counter()
    for b in batches:
        for ev in b:
            if ev.message_id and ev.message_id not in by_id:
                by_id[ev.message_id] = ev.ts
    el_by_id = time.perf_counter() - t
    return {"events": len(events), "seconds": el, "by_id_seconds": el_by_id, "kept": kept,
            "rss_mb": _peak_rss_mb()}


def hand_loop(path: str) -> dict[str, float]:
    loop = _HandLoop()
    feed = loop.feed
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            n += 1
            feed(line)
    el = time.perf_counter() - t
    return {"events": n, "seconds": el, "sent": loop.sent, "rss_mb": _peak_rss_mb()}


PROFILES = {
    "lean": "the cart journey alone: no model, no recommendations, no profile view",
    "lean+catalog": "lean, with the demo's product catalog (nudge/data/catalog.csv) joined",
    "default": "the defaults: cart + propensity model + recommendations (the demo's catalog) "
               "+ profile view",
    "all": "every journey, segments, model, recommendations, A/B and holdout (demo.toml)",
}


def catalog_memory(products: str) -> dict[str, float]:
    """`products` distinct products through the catalog's parse and apply (feed records as
    a shop's: ~30-character titles, links and image links on the shop's host), in event-time
    order: the RSS they hold and the time per update."""
    import orjson

    from nudge.core.timefmt import to_iso
    from nudge.scoring.catalog import Catalog
    from nudge.scoring.catalogfeed import parse_raw

    n = int(products)
    start = 1_790_000_000_000  # the feed's updates a second apart, applied as time passes
    rss0 = _current_rss_mb()
    cat = Catalog(max_products=max(n, 1))
    t = time.perf_counter()
    for i in range(n):
        pid = f"sku-{i:07d}"
        raw = orjson.dumps({
            "id": pid, "title": f"Merino Crew Neck Sweater {i % 977}", "price": "79.00 EUR",
            "sale_price": "59.00 EUR" if i % 7 == 0 else "", "availability": "in stock",
            "link": f"https://shop.example/products/merino-crew-neck-{pid}",
            "image_link": f"https://shop.example/images/{pid}-front.jpg",
            "product_type": f"Apparel > Knitwear > {i % 40}", "brand": "Acme",
            "updated_at": to_iso(start + i * 1000)})
        u = parse_raw(raw, "bench", i)
        cat.add(u)
        if i % 10_000 == 9_999:
            cat.advance(u.ts)
    cat.advance(2 ** 50)
    el = time.perf_counter() - t
    import gc
    import pickle

    gc.collect()
    held = _current_rss_mb() - rss0
    t = time.perf_counter()
    first = len(pickle.dumps(cat.snapshot(), pickle.HIGHEST_PROTOCOL))
    snap_first = time.perf_counter() - t
    cat.add(parse_raw(orjson.dumps({"id": "sku-0000001", "title": "Changed", "price": 1,
                                    "updated_at": to_iso(start + n * 1000)}), "bench", n))
    cat.advance(2 ** 51)
    t = time.perf_counter()
    pickle.dumps(cat.snapshot(), pickle.HIGHEST_PROTOCOL)
    snap_next = time.perf_counter() - t
    return {"events": n, "seconds": el, "products": len(cat), "rss_mb": _peak_rss_mb(),
            "held_mb": held, "held_with_snapshot_mb": _current_rss_mb() - rss0,
            "snapshot_mb": first / 2**20, "snapshot_first_s": snap_first,
            "snapshot_next_s": snap_next}


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _flow_config(out: str, profile: str = "lean", transport: str = "outbox",
                 bootstrap: str = "", topic: str = "") -> Any:
    import dataclasses

    from nudge.app.runflow import DEMO_CONFIG
    from nudge.core import config as config_mod
    from nudge.core.deliveryconfig import Transport

    cfg = config_mod.load(DEMO_CONFIG) if profile == "all" else config_mod.Config()
    if profile in ("default", "lean+catalog"):  # recommendations need a catalog
        cfg = dataclasses.replace(cfg, catalog=dataclasses.replace(
            cfg.catalog, files=(str(DEMO_CONFIG.parent / "catalog.csv"),)))
    if profile.startswith("lean"):
        cfg = dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, enabled=False, incentive_if=""),
            recommendations=dataclasses.replace(cfg.recommendations, enabled=False))
    outputs = dataclasses.replace(
        cfg.outputs, decisions=f"{out}/decisions.jsonl", dead_letters=f"{out}/dead-letters.jsonl",
        segments=f"{out}/segments.jsonl", outcomes=f"{out}/outcomes.jsonl",
        profiles="" if profile.startswith("lean") else f"{out}/profiles")
    cfg = dataclasses.replace(
        cfg, outputs=outputs,
        delivery=dataclasses.replace(cfg.delivery, transport=cast(Transport, transport),
                                     outbox_dir=f"{out}/outbox", ledger_dir=f"{out}/ledger"))
    if bootstrap:
        cfg = dataclasses.replace(cfg, kafka=dataclasses.replace(
            cfg.kafka, brokers=(bootstrap,), topic=topic, tail=False,
            email_topic=f"{topic}-emails-{profile}"))
    return cfg


def _run_flow(flow: Any) -> float:
    from datetime import timedelta

    from bytewax.testing import run_main

    from nudge.flows.dataflow import tune_gc

    tune_gc()
    t = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return time.perf_counter() - t


def file_replay(path: str, out: str, transport: str = "outbox",
                profile: str = "lean") -> dict[str, float]:
    from nudge.flows.dataflow import build_flow
    from nudge.sources.files import JsonlSource

    cfg = _flow_config(out, profile, transport)
    rss0 = _peak_rss_mb()
    cpu0 = _cpu_seconds()
    el = _run_flow(build_flow(cfg, source=JsonlSource([path], cfg.events.batch_size)))
    return {"events": _count_lines(path), "seconds": el, "cpu_seconds": _cpu_seconds() - cpu0,
            "rss_mb": _peak_rss_mb(), "rss_base_mb": rss0, **_results(cfg, out)}


def _cpu_seconds() -> float:
    """This process's CPU time, every thread: steadier than wall time on a busy machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _results(cfg: Any, out: str) -> dict[str, float]:
    """What a run decided and sent, and its model's progressive validation."""
    r: dict[str, float] = {"decisions": _count_lines(f"{out}/decisions.jsonl")}
    outbox = Path(out) / "outbox"
    r["emails"] = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
    if Path(f"{out}/segments.jsonl").exists():
        r["segment_changes"] = _count_lines(f"{out}/segments.jsonl")
    if cfg.outputs.profiles and cfg.model.enabled:
        from nudge.app.inspection import model_report

        report = model_report(cfg)
        r.update({f"model_{k}": v for k, v in report.items() if v is not None})
    return r


def kafka_consume_parse(bootstrap: str, topic: str, hand: str = "") -> dict[str, float]:
    """Consume the topic and orjson.loads each record or, with `hand`, run the hand loop."""
    import orjson
    from confluent_kafka import Consumer, KafkaError, TopicPartition
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    parts = sorted(meta.topics[topic].partitions)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-ignored",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done: set[int] = set()
    n = 0
    feed = _HandLoop().feed if hand else None
    cpu0 = _cpu_seconds()
    t = time.perf_counter()
    while len(done) < len(parts):
        for msg in c.consume(2000, 1.0):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition() or 0)
                continue
            if feed is not None:
                feed(msg.value() or b"")
            else:
                with contextlib.suppress(orjson.JSONDecodeError):
                    orjson.loads(msg.value() or b"")
            n += 1
    el = time.perf_counter() - t
    c.close()
    return {"events": n, "seconds": el, "cpu_seconds": _cpu_seconds() - cpu0,
            "rss_mb": _peak_rss_mb()}
