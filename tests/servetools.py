"""`nudge serve` as a real process on a loopback port, for tests (and its config)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.broker import Broker, free_port
from tests.flowtools import write_config

ROOT = Path(__file__).resolve().parent.parent
WRITE_KEY = "test-write-key"


def serve_config(tmp: Path, broker: Broker, topic: str, **sections: dict[str, Any]) -> Path:
    base: dict[str, dict[str, Any]] = {
        "kafka": {"brokers": [broker.bootstrap], "topic": topic, "batch_size": 100},
        "serve": {"ack_timeout": "20s", "shutdown_timeout": "20s"},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return write_config(tmp / "nudge.toml", tmp, shards=8, **base)


@contextmanager
def running_service(config: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `nudge serve`, wait until /ready answers 200, yield (base URL, process);
    SIGTERM at the end (the graceful path)."""
    port = free_port()
    log = config.parent / f"serve-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nudge", "serve", "--config", str(config), "--port", str(port),
         "--workers", str(workers)], cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NUDGE_WRITE_KEYS": WRITE_KEY,
             **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nudge serve exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"nudge serve not ready in 60 s: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
