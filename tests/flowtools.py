"""Helpers for flow tests: sample files, configs, and a flow that SIGKILLs itself.

`crashing_flow` is run by `python -m bytewax.run` in a subprocess: its source kills the whole
process with SIGKILL after a given number of batches, exactly like an OOM kill or a power
cut, after Bytewax has committed some epochs. The next run resumes from recovery.
"""

from __future__ import annotations

import os
import signal
import socket
import zlib
from pathlib import Path
from typing import Any

from bytewax.dataflow import Dataflow

from nudge.core import config as config_mod
from nudge.flows.dataflow import build_flow
from nudge.sources.files import JsonlSource, _FilePartition


def write_partitions(records: list[tuple[str, bytes]], directory: Path, parts: int) -> list[Path]:
    """Split records by customer over `parts` files, as Kafka splits them by key."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"events-{i}.jsonl" for i in range(parts)]
    files = [p.open("wb") for p in paths]
    for user, raw in records:
        files[zlib.crc32(user.encode()) % parts].write(raw + b"\n")
    for f in files:
        f.close()
    return paths


def cluster_addresses(n: int) -> str:
    """`-a` for a Bytewax cluster of `n` processes on free loopback ports."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ";".join(f"127.0.0.1:{p}" for p in ports)


TEST_KEY_ENV = "NUDGE_TEST_SIGNING_KEY"
TEST_KEY = "tests-only-signing-key-0123456789abcdef"


def write_config(path: Path, out: Path, *, shards: int = 8,
                 **sections: dict[str, Any]) -> Path:
    """A TOML config whose outputs, outbox and ledger all live under `out`."""
    base: dict[str, dict[str, Any]] = {
        "outputs": {"decisions": str(out / "decisions.jsonl"),
                    "dead_letters": str(out / "dead-letters.jsonl"),
                    "segments": str(out / "segments.jsonl"),
                    "outcomes": str(out / "outcomes.jsonl"),
                    "profiles": str(out / "profiles")},
        "delivery": {"transport": "outbox", "outbox_dir": str(out / "outbox"),
                     "ledger_dir": str(out / "ledger")},
        "render": {"strict": True},
        # the tests' own key (tests/conftest.py sets the variable), never the demo key
        "secrets": {"signing_key": "test"},
        "secrets.keys.test": {"env": TEST_KEY_ENV},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = [f"shards = {shards}"]
    for name, values in base.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            elif isinstance(value, list):
                lines.append(f"{key} = [{', '.join(f'{chr(34)}{v}{chr(34)}' for v in value)}]")
            else:
                lines.append(f'{key} = "{value}"')
    path.write_text("\n".join(lines) + "\n")
    return path


class _CrashingPartition(_FilePartition):
    budget = 0

    def next_batch(self):  # type: ignore[no-untyped-def]
        _CrashingPartition.budget -= 1
        if _CrashingPartition.budget < 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().next_batch()


class _CrashingSource(JsonlSource):
    def build_part(self, step_id, for_part, resume_state):  # type: ignore[no-untyped-def]
        part = super().build_part(step_id, for_part, resume_state)
        part.__class__ = _CrashingPartition
        return part


def crashing_flow(config_path: str, crash_after: int, *files: str) -> Dataflow:
    cfg = config_mod.load(config_path)
    _CrashingPartition.budget = crash_after
    return build_flow(cfg, source=_CrashingSource(list(files), batch_size=25))


def small_batch_flow(config_path: str, *files: str) -> Dataflow:
    cfg = config_mod.load(config_path)
    return build_flow(cfg, source=JsonlSource(list(files), batch_size=25))


class _ResumeLoggingSource(JsonlSource):
    """A JsonlSource that appends one JSON line per partition it opens to `log`:
    {"part": key, "resume": {"format": 2, "offset": byte offset, "line": next line} or null,
    "pid": process id}."""

    def __init__(self, paths: list[str], batch_size: int, log: str) -> None:
        super().__init__(paths, batch_size)
        self.log = Path(log)

    def build_part(self, step_id, for_part, resume_state):  # type: ignore[no-untyped-def]
        import json

        with self.log.open("a") as f:
            f.write(json.dumps({"part": for_part, "resume": resume_state,
                                "pid": os.getpid()}) + "\n")
        return super().build_part(step_id, for_part, resume_state)


def resume_logging_flow(config_path: str, log_path: str, *files: str) -> Dataflow:
    """small_batch_flow, logging the resume state each source partition starts from."""
    cfg = config_mod.load(config_path)
    return build_flow(cfg, source=_ResumeLoggingSource(list(files), 25, log_path))


def link_crashing_flow(config_path: str, flag_path: str, crash_at_link: int,
                       *files: str) -> Dataflow:
    """small_batch_flow whose identity step SIGKILLs the process when the `crash_at_link`-th
    LINK reaches it: the links step has decided the link, its merge is not made yet. Only
    once (a flag file marks the crash), so a resumed run goes through."""
    from nudge.core.events import Kind
    from nudge.state.identity import IdentityShard

    flag = Path(flag_path)
    original = IdentityShard.process
    seen = [0]

    def process(self, chunks):  # type: ignore[no-untyped-def]
        seen[0] += sum(1 for c in chunks for ev in c.events if ev.kind == Kind.LINK)
        if seen[0] >= crash_at_link and not flag.exists():
            flag.write_text("crashed between a link and its merge\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, chunks)

    IdentityShard.process = process  # type: ignore[method-assign]
    return small_batch_flow(config_path, *files)
