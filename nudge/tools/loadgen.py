"""A small HTTP/1.1 load generator on asyncio streams, for `make bench` against `nudge serve`
on loopback: keep-alive connections, pre-built requests, no client library in the way.

Two modes:
  - `closed_loop`: `connections` clients each send their next request when the last answer
    arrived, for `seconds`: the throughput a server sustains;
  - `open_loop`: requests start on a fixed schedule (`rate` a second) whatever the answers
    do, and each latency is measured from its scheduled start, so a stalled server shows up
    as latency instead of silently lowering the offered load (coordinated omission).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def build(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


@dataclass
class Result:
    sent: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)  # seconds

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def closed_loop(port: int, requests: Callable[[int], bytes], *, connections: int,
                      seconds: float, limit: int = 10**9) -> Result:
    """`requests(i)` gives the i-th request; stops after `seconds` or `limit` requests."""
    result = Result()
    deadline = time.perf_counter() + seconds
    counter = iter(range(limit))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                if time.perf_counter() > deadline:
                    break
                result.count(await _exchange(reader, writer, requests(i)))
                result.sent += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


async def open_loop(port: int, requests: Callable[[int], bytes], *, rate: float, count: int,
                    max_connections: int = 200) -> Result:
    """`count` requests at `rate` a second; latency from each one's scheduled start."""
    result = Result()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    opened = 0
    start = time.perf_counter() + 0.05

    async def one(i: int) -> None:
        nonlocal opened
        due = start + i / rate
        if idle:
            conn = idle.pop()
        else:
            opened += 1
            if opened > max_connections:
                result.count(0)  # the client could not keep up: counted, not hidden
                return
            conn = await asyncio.open_connection("127.0.0.1", port)
        status = await _exchange(conn[0], conn[1], requests(i))
        result.latencies.append(time.perf_counter() - due)
        result.count(status)
        idle.append(conn)

    tasks = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i)))
    await asyncio.gather(*tasks)
    result.sent = count
    result.seconds = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    return result


def run(coro: object) -> Result:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
