"""`make bench`, the `nudge serve` section: the service driven by a load generator on loopback
(nudge/tools/loadgen.py), with the tansu broker acknowledging every event.

    python -m nudge.tools.servebench [--seconds 10] [--count 5000] [--rate 1000]

Reports:
  - collector events/s through `/v1/batch` (100 events a request), on one worker process and
    on two (closed loop: 8 connections, for `--seconds` each);
  - p50/p99 latency of a single `/v1/track` and of a click redirect (`/c/{token}`) at a
    steady `--rate` requests/s (open loop, `--count` requests each; latency counted from each
    request's scheduled start, so a stall is not hidden);
  - the delay from a one-click unsubscribe to the flow (`nudge run`, tailing the topic)
    writing the suppression (`no_consent`) of that customer's next stage, due one second
    after the unsubscribe (events.allowed_lateness = 1s).
Every answer counted is the service's 2xx/3xx: an event is counted only once the broker
acknowledged it. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from nudge.core.keyring import Keyring
from nudge.core.timefmt import to_iso
from nudge.core.tokens import Claims, sign
from nudge.tools import loadgen
from nudge.tools.bench.broker import start_broker

OUT = Path("var/bench/serve")
WRITE_KEY = "bench-write-key"
SIGNING = "bench-signing-key-0123456789abcdef0123"
AUTH = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
ENV = {"NUDGE_WRITE_KEYS": WRITE_KEY, "NUDGE_BENCH_KEY": SIGNING}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(bootstrap: str, topic: str, out: Path, **extra: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "nudge.toml"
    path.write_text(f"""shards = 8
[kafka]
brokers = ["{bootstrap}"]
topic = "{topic}"
batch_size = 1000
[events]
allowed_lateness = "1s"
heartbeat_interval = "200ms"
[triggers.cart_abandonment]
stages = ["1h"]
[outputs]
decisions = "{out / 'decisions.jsonl'}"
dead_letters = "{out / 'dead-letters.jsonl'}"
segments = ""
outcomes = ""
profiles = ""
[delivery]
transport = "none"
ledger_dir = "{out / 'ledger'}"
[serve]
ack_timeout = "30s"
[secrets]
signing_key = "bench"
[secrets.keys.bench]
env = "NUDGE_BENCH_KEY"
{extra.get("more", "")}
""")
    return path


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        fut.result(timeout=30)


class Service:
    def __init__(self, config: Path, workers: int) -> None:
        self.port = _free_port()
        self.log = config.parent / f"serve-{workers}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nudge", "serve", "--config", str(config), "--port",
             str(self.port), "--workers", str(workers)],
            env={**os.environ, **ENV}, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nudge serve exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("nudge serve not ready within 60 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _batches(n: int, size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    ts = to_iso(int(time.time() * 1000) - 3600_000)
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    out = []
    for b in range(n):
        batch = [{"type": "track", "event": "Product Viewed",
                  "userId": f"c{rng.randrange(100_000)}", "messageId": f"{seed}-{b}-{i}",
                  "timestamp": ts, "properties": {"product_id": f"sku-{rng.randrange(5000)}",
                                                  "name": "Linen Shirt", "price": 49.0,
                                                  "category": "apparel"}}
                 for i in range(size)]
        out.append(loadgen.build("POST", "/v1/batch", orjson.dumps({"batch": batch}), headers))
    return out


def collector_throughput(config: Path, workers: int, seconds: float) -> dict[str, float]:
    svc = Service(config, workers)
    try:
        reqs = _batches(50, 100, workers)
        r = loadgen.run(loadgen.closed_loop(svc.port, lambda i: reqs[i % len(reqs)],
                                            connections=8, seconds=seconds))
    finally:
        svc.stop()
    ok = r.statuses.get(200, 0)
    return {"events_per_s": ok * 100 / r.seconds, "requests": r.sent, "ok": ok,
            "seconds": r.seconds, "other": r.sent - ok}


def latencies(config: Path, rate: float, count: int) -> dict[str, Any]:
    svc = Service(config, 1)
    ring = Keyring({"bench": SIGNING.encode()}, signing_id="bench")
    token = sign(ring, Claims("click", "c1", "cart_abandonment", 1, 1, None,
                              "https://shop.example/p/sku-1", 2 * 10**12))
    ts = to_iso(int(time.time() * 1000) - 3600_000)
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}

    def track(i: int) -> bytes:
        body = orjson.dumps({"event": "Product Viewed", "userId": f"c{i % 5000}",
                             "messageId": f"t-{i}", "timestamp": ts,
                             "properties": {"product_id": "sku-1", "price": 9.5}})
        return loadgen.build("POST", "/v1/track", body, headers)

    click = loadgen.build("GET", f"/c/{token}", b"", {"User-Agent": "Mozilla/5.0 (bench)"})
    try:
        loadgen.run(loadgen.open_loop(svc.port, track, rate=rate, count=min(count, 500)))  # warm
        t = loadgen.run(loadgen.open_loop(svc.port, track, rate=rate, count=count))
        c = loadgen.run(loadgen.open_loop(svc.port, lambda i: click, rate=rate, count=count))
    finally:
        svc.stop()
    return {"track": t, "click": c}


def unsubscribe_delay(bootstrap: str, out: Path) -> dict[str, float]:
    """Seconds from a one-click unsubscribe (answered 200) to the flow's decision that
    suppresses the customer's next stage, due one second after the unsubscribe."""
    topic = "serve-bench-unsub"
    _create_topic(bootstrap, topic, 2)
    config = _config(bootstrap, topic, out)
    decisions = out / "decisions.jsonl"
    decisions.unlink(missing_ok=True)
    svc = Service(config, 1)
    flow = subprocess.Popen([sys.executable, "-m", "nudge", "run", "--config", str(config)],
                            env={**os.environ, **ENV}, stdout=(out / "run.log").open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        start = time.time()
        due_warm, due = start + 15, start + 30  # the flow starts in a few seconds
        events = []
        for who, at in (("warm-1", due_warm), ("unsub-1", due)):
            added = int((at - 3600) * 1000)
            events += [{"type": "identify", "userId": who, "messageId": f"{who}-i",
                        "timestamp": to_iso(added - 1000),
                        "traits": {"email": f"{who}@example.com", "marketing_consent": True}},
                       {"type": "track", "event": "Product Added", "userId": who,
                        "messageId": f"{who}-a", "timestamp": to_iso(added),
                        "properties": {"product_id": "sku-1", "price": 9.5}}]
        _post(svc.port, "/v1/batch", orjson.dumps({"batch": events}),
              {"Authorization": AUTH, "Content-Type": "application/json"})
        while "warm-1" not in _read(decisions):  # the flow is live and deciding
            if time.time() > due_warm + 60 or flow.poll() is not None:
                log = (out / "run.log").read_text()[-2000:]
                raise RuntimeError(f"the flow made no decision: {log}")
            time.sleep(0.1)
        time.sleep(max(0.0, due - 1.0 - time.time()))
        ring = Keyring({"bench": SIGNING.encode()}, signing_id="bench")
        token = sign(ring, Claims("unsubscribe", "unsub-1", "cart_abandonment", 1, 1, None,
                                  "", 2 * 10**12))
        _post(svc.port, f"/u/{token}", b"List-Unsubscribe=One-Click",
              {"Content-Type": "application/x-www-form-urlencoded"})
        posted = time.time()
        while '"unsub-1"' not in _read(decisions):
            if time.time() > posted + 60:
                raise RuntimeError("no decision for unsub-1 within 60 s")
            time.sleep(0.02)
        decided = time.time()
        line = next(x for x in _read(decisions).splitlines() if '"unsub-1"' in x)
        outcome = orjson.loads(line)
    finally:
        flow.terminate()
        svc.stop()
        try:
            flow.wait(30)
        except subprocess.TimeoutExpired:
            flow.kill()
    return {"delay_s": decided - posted, "after_due_s": decided - due,
            "suppressed": float(outcome["outcome"] == "suppressed"
                                and outcome["reason"] == "no_consent")}


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        if resp.status != 200:
            raise RuntimeError(f"POST {path}: {resp.status}")


def _ms(r: loadgen.Result, p: float) -> str:
    return f"{r.percentile(p) * 1000:6.2f} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.tools.servebench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="per throughput run")
    ap.add_argument("--count", type=int, default=5000, help="requests per latency run")
    ap.add_argument("--rate", type=float, default=1000.0, help="requests/s of latency runs")
    ap.add_argument("--skip-unsubscribe", action="store_true")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    proc, bootstrap = start_broker()
    try:
        topic = "serve-bench"
        _create_topic(bootstrap, topic, 4)
        config = _config(bootstrap, topic, OUT / "collector")
        print("nudge serve (loopback, tansu broker acknowledging every event):")
        for workers in (1, 2):
            r = collector_throughput(config, workers, args.seconds)
            print(f"  /v1/batch, 100 events a request, {workers} worker process(es): "
                  f"{r['events_per_s']:>9,.0f} events/s ({int(r['ok']):,} requests in "
                  f"{r['seconds']:.1f} s; {int(r['other'])} not 200)")
        lat = latencies(config, args.rate, args.count)
        for name, res in (("/v1/track, one event", lat["track"]),
                          ("click redirect /c/{token}", lat["click"])):
            print(f"  {name:<27} at {args.rate:,.0f}/s, {res.sent:,} requests: "
                  f"p50 {_ms(res, 50)}  p99 {_ms(res, 99)}  max {_ms(res, 100)}  "
                  f"answers {dict(sorted(res.statuses.items()))}")
        if not args.skip_unsubscribe:
            u = unsubscribe_delay(bootstrap, OUT / "unsubscribe")
            print(f"  one-click unsubscribe -> next stage suppressed (due 1 s later, "
                  f"allowed_lateness 1 s): {u['delay_s']:.2f} s "
                  f"({u['after_due_s']:.2f} s after the due time; "
                  f"{'no_consent' if u['suppressed'] else 'NOT suppressed'})")
    finally:
        proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
