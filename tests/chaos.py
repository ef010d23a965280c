"""`make chaos`: SIGKILL `nudge run` at random points of a Kafka run, resume, compare.

    python -m tests.chaos [--events 200000] [--customers 25000] [--kills 20] [--seed 1]
                          [--partitions 3] [--workdir DIR]

One tansu broker (Kafka protocol, loopback) holds the sample traffic; one ESP stand-in
(tests/servers.py, a real HTTP server in this process, so it outlives every kill) receives
the emails. The config is the demo's: every journey, segments, the propensity model,
recommendations, an A/B test and a holdout.

1. Reference: `nudge run --bounded` uninterrupted, with its own ESP.
2. Chaos: the same on a new recovery store (`nudge recovery init`), killed with SIGKILL
   `--kills` times and restarted each time on that store. Kill points are random: most at
   a random email count of the reference (so the kills spread over the whole run and each
   restart makes progress) plus a random delay; some during start-up and recovery load.
   Then one last run to the end.
3. Compared: the emails the ESP accepted (keyed by Idempotency-Key, and their bodies byte
   for byte), the decision log and the dead letters (partition by partition: how the
   partitions' lines interleave in the one file depends on fetch timing in any run).
   Printed as a report; the exit status is 1 when anything was lost, duplicated or
   changed.

"Duplicate" means delivered twice: an email whose ledger entry had not been written when
the process died is sent again on resume, and the ESP drops the copy by its Idempotency-Key
(README, "Effectively once"); the report counts those copies separately.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nudge.app import sample
from tests.broker import Broker, free_port
from tests.servers import EspServer, esp_server

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "nudge" / "data" / "demo.toml"
RUN_TIMEOUT = 1800.0


@dataclass
class Report:
    events: int
    partitions: int
    kills: int = 0
    startup_kills: int = 0
    restarts: int = 0
    reference_emails: int = 0
    emails: int = 0
    lost: int = 0
    extra: int = 0
    changed: int = 0
    resent_copies: int = 0
    decisions: int = 0
    decisions_equal: bool = False
    dead_letters: int = 0
    dead_letters_equal: bool = False
    reference_seconds: float = 0.0
    chaos_seconds: float = 0.0
    kill_points: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.extra == 0 and self.changed == 0
                and self.decisions_equal and self.dead_letters_equal
                and self.emails == self.reference_emails > 0)

    def format(self) -> str:
        return "\n".join([
            f"chaos: {self.events:,} events on {self.partitions} Kafka partitions, "
            f"{self.kills} SIGKILLs ({self.startup_kills} during start-up or recovery load), "
            f"{self.restarts} restarts",
            f"  reference run (uninterrupted)   {self.reference_seconds:7.1f} s, "
            f"{self.reference_emails:,} emails accepted",
            f"  chaos run (all restarts)        {self.chaos_seconds:7.1f} s, "
            f"{self.emails:,} emails accepted",
            f"  lost {self.lost}, duplicated {self.extra}, changed {self.changed} "
            f"(bodies compared byte for byte)",
            f"  copies re-sent after a kill and dropped by the ESP's Idempotency-Key: "
            f"{self.resent_copies}",
            f"  decision log: {self.decisions:,} lines, "
            f"{'identical' if self.decisions_equal else 'DIFFERENT'}",
            f"  dead letters: {self.dead_letters:,} lines, "
            f"{'identical' if self.dead_letters_equal else 'DIFFERENT'} partition by partition",
            f"  kill points: {', '.join(self.kill_points)}",
            "  result: " + ("OK: 0 lost, 0 duplicates" if self.ok else "FAILED"),
        ])


def write_config(path: Path, out: Path, *, bootstrap: str, topic: str, esp_url: str,
                 recovery: bool) -> Path:
    """The demo's journeys, segments and model, with Kafka input, the ESP and files out."""
    demo = DEMO.read_text()
    head = demo[:demo.index("[outputs]")].replace(
        '"catalog.csv"', f'"{DEMO.parent / "catalog.csv"}"')
    extra = f"""
[kafka]
brokers = ["{bootstrap}"]
topic = "{topic}"
batch_size = 500

[outputs]
decisions = "{out / 'decisions.jsonl'}"
dead_letters = "{out / 'dead-letters.jsonl'}"
segments = "{out / 'segments.jsonl'}"
outcomes = "{out / 'outcomes.jsonl'}"
profiles = ""

[delivery]
transport = "esp"
ledger_dir = "{out / 'ledger'}"
concurrency = 4
queue_size = 200

[delivery.esp]
url = "{esp_url}"
timeout = "5s"
max_attempts = 8
backoff_base = "20ms"
backoff_max = "500ms"

[render]
strict = true

[secrets]
signing_key = "chaos"

[secrets.keys.chaos]
env = "NUDGE_CHAOS_SIGNING_KEY"
"""
    if recovery:
        extra += f"""
[recovery]
dir = "{out / 'recovery'}"
snapshot_interval = "300ms"
"""
    path.write_text(head + extra)
    return path


class _Run:
    """A `nudge` process whose output goes to a log file (a pipe nobody reads would fill
    up and stall it)."""

    def __init__(self, log: Path, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), NUDGE_ESP_API_KEY="chaos",
                   NUDGE_CHAOS_SIGNING_KEY="chaos-only-signing-key-0123456789abcdef")
        self.log = log
        with log.open("ab") as f:
            f.write(f"--- nudge {' '.join(args)}\n".encode())
            f.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "nudge", *args], cwd=ROOT,
                                         env=env, stdout=f, stderr=subprocess.STDOUT)

    def finish(self, what: str) -> None:
        self.proc.wait(RUN_TIMEOUT)
        if self.proc.returncode != 0:
            raise RuntimeError(f"{what} exited with {self.proc.returncode}; its log "
                               f"{self.log}:\n{self.log.read_text()[-4000:]}")


def _wait_until(proc: subprocess.Popen[bytes], ready: Callable[[], bool],
                limit: float) -> bool:
    """Poll until `ready()` (True) or the process ended or `limit` seconds passed (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            return True
        time.sleep(0.01)
    return proc.poll() is None


def _accepted(esp: EspServer, n: int) -> Callable[[], bool]:
    return lambda: len(esp.by_key) >= n


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def produce_sample(broker: Broker, topic: str, *, events: int, customers: int, seed: int,
                   partitions: int) -> int:
    import itertools

    broker.create_topic(topic, partitions)
    records: list[tuple[bytes | None, bytes]] = []
    for line in itertools.islice(
            sample.iter_events(customers=customers, days=21.0, seed=seed, bad_ratio=0.002),
            events):
        try:
            doc = orjson.loads(line)
            user = doc.get("userId") or doc.get("anonymousId")
        except (orjson.JSONDecodeError, AttributeError):
            user = None
        # A producer keys by customer; a record it cannot key goes to partition 0.
        records.append((user.encode() if isinstance(user, str) else b"", line))
    broker.produce(topic, records)
    return len(records)


def chaos(*, events: int = 200_000, customers: int = 25_000, kills: int = 20,
          partitions: int = 3, seed: int = 1, workdir: Path,
          log: Callable[[str], None] = lambda s: print(s, flush=True)) -> Report:
    rng = random.Random(seed)
    report = Report(events, partitions)
    broker = Broker(free_port())
    broker.start(workdir)
    try:
        topic = "chaos-events"
        n = produce_sample(broker, topic, events=events, customers=customers, seed=seed,
                           partitions=partitions)
        report.events = n
        log(f"produced {n:,} events to {topic} ({partitions} partitions)")
        with esp_server(fault_rate=0.0) as ref_esp, esp_server(fault_rate=0.0) as esp:
            ref_dir, chaos_dir = workdir / "reference", workdir / "chaos"
            ref_dir.mkdir()
            chaos_dir.mkdir()
            ref_conf = write_config(ref_dir / "nudge.toml", ref_dir, bootstrap=broker.bootstrap,
                                    topic=topic, esp_url=ref_esp.url, recovery=False)
            conf = write_config(chaos_dir / "nudge.toml", chaos_dir, bootstrap=broker.bootstrap,
                                topic=topic, esp_url=esp.url, recovery=True)

            t = time.monotonic()
            _Run(ref_dir / "nudge.log", "run", "--config", str(ref_conf), "--bounded").finish(
                "the reference run")
            report.reference_seconds = time.monotonic() - t
            report.reference_emails = len(ref_esp.by_key)
            log(f"reference: {report.reference_emails:,} emails in "
                f"{report.reference_seconds:.1f} s")

            _Run(chaos_dir / "nudge.log", "recovery", "init", "--config", str(conf),
                 "--partitions", "1").finish("nudge recovery init")
            report.chaos_seconds = _kill_and_resume(conf, esp, report, kills, rng, log)
            _compare(report, ref_esp, esp, ref_dir, chaos_dir)
    finally:
        broker.stop()
    return report


def _kill_and_resume(conf: Path, esp: EspServer, report: Report, kills: int,
                     rng: random.Random, log: Callable[[str], None]) -> float:
    total = max(2, report.reference_emails)
    targets = sorted(rng.sample(range(1, total), min(kills, total - 1)))
    t = time.monotonic()
    for target in targets:
        run = _Run(conf.parent / "nudge.log", "run", "--config", str(conf), "--bounded")
        proc = run.proc
        report.restarts += 1
        if rng.random() < 0.15:  # during start-up, recovery load or the first epochs
            alive = _wait_until(proc, lambda: False, rng.uniform(0.3, 3.0))
            point = "start-up"
            report.startup_kills += alive
        else:
            alive = _wait_until(proc, _accepted(esp, target), RUN_TIMEOUT)
            if alive:
                time.sleep(rng.uniform(0.0, 0.3))
                alive = proc.poll() is None
            point = f"{len(esp.by_key)}"
        if not alive:
            run.finish("a chaos run")  # it ran to the end before the kill point
            log(f"run {report.restarts} finished before its kill point")
            return time.monotonic() - t
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        report.kills += 1
        report.kill_points.append(point)
        log(f"kill {report.kills}: SIGKILL at {point} emails accepted")
    _Run(conf.parent / "nudge.log", "run", "--config", str(conf), "--bounded").finish(
        "the final chaos run")
    report.restarts += 1
    return time.monotonic() - t


def _compare(report: Report, ref_esp: EspServer, esp: EspServer, ref_dir: Path,
             chaos_dir: Path) -> None:
    ref, got = ref_esp.by_key, esp.by_key
    report.emails = len(got)
    report.lost = len(ref.keys() - got.keys())
    report.extra = len(got.keys() - ref.keys())
    report.changed = sum(orjson.dumps(ref[k]) != orjson.dumps(got[k])
                         for k in ref.keys() & got.keys())
    report.resent_copies = esp.repeats
    ref_decisions = _lines(ref_dir / "decisions.jsonl")
    report.decisions = len(ref_decisions)
    report.decisions_equal = ref_decisions == _lines(chaos_dir / "decisions.jsonl")
    # One file for all partitions: how their lines interleave depends on fetch timing, in an
    # uninterrupted run too. Each partition's lines keep its order; compare those.
    ref_dead = _by_partition(_lines(ref_dir / "dead-letters.jsonl"))
    report.dead_letters = sum(len(v) for v in ref_dead.values())
    report.dead_letters_equal = ref_dead == _by_partition(
        _lines(chaos_dir / "dead-letters.jsonl"))


def _by_partition(lines: list[bytes]) -> dict[tuple[str, int], list[bytes]]:
    out: dict[tuple[str, int], list[bytes]] = {}
    for line in lines:
        d = orjson.loads(line)
        out.setdefault((d.get("source") or "", d.get("partition") or 0), []).append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--customers", type=int, default=25_000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the runs' files here (default: a temporary directory)")
    args = ap.parse_args(argv)
    kw: dict[str, Any] = {"events": args.events, "customers": args.customers,
                          "kills": args.kills, "partitions": args.partitions,
                          "seed": args.seed}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        report = chaos(workdir=args.workdir, **kw)
    else:
        with tempfile.TemporaryDirectory(prefix="nudge-chaos-") as tmp:
            report = chaos(workdir=Path(tmp), **kw)
    print(report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
