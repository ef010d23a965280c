"""What users run, timed from outside: `nudge run --bounded` as a whole process on the
bench's topic, one process or a cluster (`--process-id/--addresses`), with its own config
file, its peak RSS, and the moment it reads its first records (the source's log line).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_TOML = Path(__file__).resolve().parents[2] / "data" / "demo.toml"
KEY_ENV = "NUDGE_BENCH_SIGNING_KEY"
# the source's INFO line at a partition's first records (nudge/kafka/source.py)
FIRST_RECORDS = "first records"
TIMEOUT = 3600


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {type(v).__name__}")


def to_toml(doc: dict[str, Any], prefix: str = "") -> str:
    """A TOML document from what `tomllib` reads (tables, arrays, inline tables, scalars)."""
    plain = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    lines = [f"{k} = {_toml_value(v)}" for k, v in plain.items()]
    if prefix and (plain or not tables):
        lines.insert(0, f"[{prefix}]")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables.items():
        out += to_toml(v, f"{prefix}.{k}" if prefix else k)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(path: Path, out: Path, profile: str, transport: str, bootstrap: str,
                 topic: str) -> Path:
    """The run's config file: the cart journey alone ("lean") or the demo's ("all"), with
    its outputs under `out`, reading `topic` and sending emails to a topic of its own."""
    if profile == "all":
        with DEMO_TOML.open("rb") as f:
            doc = tomllib.load(f)
        doc["catalog"]["files"] = [str(DEMO_TOML.parent / p) for p in doc["catalog"]["files"]]
    elif profile == "lean":
        doc = {"model": {"enabled": False, "incentive_if": ""},
               "recommendations": {"enabled": False}}
    else:
        raise ValueError(f"profile {profile!r}: lean or all")
    doc = _merge(doc, {
        "kafka": {"brokers": [bootstrap], "topic": topic, "tail": False,
                  "email_topic": f"{topic}-emails-{out.name}"},
        "outputs": {"decisions": str(out / "decisions.jsonl"),
                    "dead_letters": str(out / "dead-letters.jsonl"),
                    "segments": str(out / "segments.jsonl"),
                    "outcomes": str(out / "outcomes.jsonl"),
                    "profiles": "" if profile == "lean" else str(out / "profiles")},
        "delivery": {"transport": transport, "outbox_dir": str(out / "outbox"),
                     "ledger_dir": str(out / "ledger")},
        # the bench's own key from its environment, never the demo key (kafka sends email)
        "secrets": {"signing_key": "bench", "keys": {"bench": {"env": KEY_ENV}}},
    })
    path.write_text(to_toml(doc))
    return path


@dataclass
class Run:
    seconds: float  # process start to exit, the slowest process of a cluster
    first_records: float  # process start to the first records read (nan: never seen)
    rss_mb: float  # peak RSS, the largest process of a cluster
    cpu: float = float("nan")  # CPU seconds (user + system) of all its processes
    cpu_max: float = float("nan")  # CPU seconds of its busiest process
    first_cpu: float = float("nan")  # CPU seconds of the first process to read records then
    decisions: list[bytes] = field(default_factory=list)


def _fresh(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault(KEY_ENV, secrets.token_hex(32))
    return env


def cpu_seconds(pid: int) -> float:
    """A live process's user + system CPU time (Linux /proc; nan elsewhere): on a loaded
    machine its start-up is better told by the CPU it took than by the wall clock."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch(proc: subprocess.Popen[str], t0: float, seen: list[float], tail: list[str]) -> None:
    """Read the process's log: note when (wall clock, CPU) its first records arrive, keep
    the last lines."""
    assert proc.stderr is not None
    for line in proc.stderr:
        if not seen and FIRST_RECORDS in line:
            seen.extend((time.perf_counter() - t0, cpu_seconds(proc.pid)))
        tail.append(line)
        del tail[:-40]


def nudge_run(config: Path, out: Path, *, processes: int = 1) -> Run:
    """`nudge run --bounded --config CONFIG` as `processes` processes (a cluster on free
    loopback ports when more than one); their time is the slowest one's."""
    _fresh(out)
    cmd = [sys.executable, "-m", "nudge.app.cli", "run", "--bounded", "--config", str(config)]
    cmds = [cmd]
    if processes > 1:
        addresses = cluster_addresses(processes)
        cmds = [[*cmd, "--process-id", str(i), "--addresses", addresses]
                for i in range(processes)]
    env = _env()
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env) for c in cmds]
    seen: list[float] = []
    tails: list[list[str]] = [[] for _ in procs]
    watchers = [threading.Thread(target=_watch, args=(p, t0, seen, t), daemon=True)
                for p, t in zip(procs, tails, strict=True)]
    for w in watchers:
        w.start()
    ends: list[float] = []
    rss = 0.0
    cpus: list[float] = []
    try:
        for p in procs:
            # wait4 reports this child's own peak RSS (ru_maxrss, KiB on Linux)
            _, status, usage = os.wait4(p.pid, 0)
            ends.append(time.perf_counter() - t0)
            p.returncode = os.waitstatus_to_exitcode(status)
            rss = max(rss, usage.ru_maxrss / 1024)
            cpus.append(usage.ru_utime + usage.ru_stime)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
    for w in watchers:
        w.join(10)
    for p, tail in zip(procs, tails, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"nudge run exited {p.returncode}:\n{''.join(tail)}")
    path = out / "decisions.jsonl"
    decisions = path.read_bytes().splitlines() if path.exists() else []
    nan = float("nan")
    return Run(max(ends), seen[0] if seen else nan, rss, sum(cpus), max(cpus),
               seen[1] if seen else nan, decisions)


def cluster_addresses(n: int) -> str:
    """`--addresses` for a cluster of `n` processes on free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ";".join(f"127.0.0.1:{p}" for p in ports)
