"""`make chaos`: SIGKILL `nudge run` at random points of a Kafka run, resume, compare, under
both delivery guarantees.

    python -m tests.chaos [--events 200000] [--customers 25000] [--kills 20] [--seed 1]
                          [--partitions 3] [--guarantee both|at_least_once|at_most_once]
                          [--workdir DIR]

One tansu broker (Kafka protocol, loopback) holds the sample traffic; ESP stand-ins
(tests/servers.py, real HTTP servers in this process, so they outlive every kill) receive
the emails. They do NOT de-duplicate by Idempotency-Key (SendGrid, SES and Mailgun do not):
every copy sent is a copy a customer would get. The config is the demo's: every journey,
segments, the propensity model, recommendations, an A/B test and a holdout.

1. Reference: `nudge run --bounded` uninterrupted, with its own ESP. Its ledger and the ESP's
   acceptance times give the window a crash can hit: from the ESP's acceptance of an email
   to the ledger's record of it.
2. Chaos, once per guarantee: the same on a new recovery store (`nudge recovery init`),
   killed with SIGKILL `--kills` times and restarted each time on that store. Kill points
   are random: most at a random email count of the reference (so the kills spread over the
   whole run and each restart makes progress) plus a random delay; some during start-up and
   recovery load. Then one last run to the end.
3. Compared: the emails the ESP delivered (by key, their bodies byte for byte, and how many
   times each), the decision log and the dead letters (partition by partition: how the
   partitions' lines interleave in the one file depends on fetch timing in any run).
   Printed as a report; the exit status is 1 when a guarantee was broken:
   - at_least_once: none lost, none changed; copies re-sent after a kill are counted;
   - at_most_once: none delivered twice, none changed; every email the ESP did not get is
     reported as a dead letter `in_doubt` (some reported ones may have been delivered).
"""

from __future__ import annotations

import argparse
import hashlib
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
    guarantee: str = "at_least_once"
    kills: int = 0
    startup_kills: int = 0
    restarts: int = 0
    reference_emails: int = 0
    emails: int = 0
    lost: int = 0
    extra: int = 0
    changed: int = 0
    resent_copies: int = 0  # deliveries beyond the first of an email
    in_doubt: int = 0  # dead letters in_doubt (at_most_once)
    in_doubt_delivered: int = 0  # of those, the ESP had it after all
    lost_unreported: int = 0  # not delivered and not reported in_doubt
    window_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)  # p50, p99, max (reference)
    decisions: int = 0
    decisions_equal: bool = False
    dead_letters: int = 0
    dead_letters_equal: bool = False
    reference_seconds: float = 0.0
    chaos_seconds: float = 0.0
    kill_points: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        same = (self.extra == 0 and self.changed == 0 and self.decisions_equal
                and self.dead_letters_equal and self.reference_emails > 0)
        if self.guarantee == "at_most_once":
            return same and self.resent_copies == 0 and self.lost_unreported == 0 \
                and self.emails + self.lost == self.reference_emails
        return same and self.lost == 0 and self.emails == self.reference_emails

    def format(self) -> str:
        p50, p99, most = self.window_ms
        if self.guarantee == "at_most_once":
            result = (f"OK: 0 duplicates, {self.lost} not delivered, all reported in_doubt"
                      if self.ok else "FAILED")
        else:
            result = (f"OK: 0 lost, {self.resent_copies} copies re-sent" if self.ok
                      else "FAILED")
        return "\n".join([
            f"chaos ({self.guarantee}): {self.events:,} events on {self.partitions} Kafka "
            f"partitions, {self.kills} SIGKILLs ({self.startup_kills} during start-up or "
            f"recovery load), {self.restarts} restarts; the ESP does not de-duplicate",
            f"  reference run (uninterrupted)   {self.reference_seconds:7.1f} s, "
            f"{self.reference_emails:,} emails delivered",
            f"  chaos run (all restarts)        {self.chaos_seconds:7.1f} s, "
            f"{self.emails:,} emails delivered",
            f"  lost {self.lost}, unexpected {self.extra}, changed {self.changed} "
            f"(bodies compared byte for byte)",
            f"  copies delivered twice or more: {self.resent_copies}",
            f"  in_doubt dead letters: {self.in_doubt} ({self.in_doubt_delivered} of them "
            f"delivered after all); lost and not reported: {self.lost_unreported}",
            f"  window from the ESP's acceptance to the ledger's record (reference run): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {most:.1f} ms",
            f"  decision log: {self.decisions:,} lines, "
            f"{'identical' if self.decisions_equal else 'DIFFERENT'}",
            f"  dead letters: {self.dead_letters:,} lines, "
            f"{'identical' if self.dead_letters_equal else 'DIFFERENT'} partition by partition",
            f"  kill points: {', '.join(self.kill_points)}",
            f"  result: {result}",
        ])


def write_config(path: Path, out: Path, *, bootstrap: str, topic: str, esp_url: str,
                 recovery: bool, guarantee: str = "at_least_once") -> Path:
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
guarantee = "{guarantee}"
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


GUARANTEES = ("at_least_once", "at_most_once")


def chaos(*, events: int = 200_000, customers: int = 25_000, kills: int = 20,
          partitions: int = 3, seed: int = 1, workdir: Path,
          guarantees: tuple[str, ...] = GUARANTEES,
          log: Callable[[str], None] = lambda s: print(s, flush=True)) -> list[Report]:
    """One reference run, then a chaos run per guarantee (each with its own kill points from
    the same seed), each compared with the reference."""
    reports = []
    broker = Broker(free_port())
    broker.start(workdir)
    try:
        topic = "chaos-events"
        n = produce_sample(broker, topic, events=events, customers=customers, seed=seed,
                           partitions=partitions)
        log(f"produced {n:,} events to {topic} ({partitions} partitions)")
        with esp_server(fault_rate=0.0, dedupe=False) as ref_esp:
            ref_dir = workdir / "reference"
            ref_dir.mkdir()
            ref_conf = write_config(ref_dir / "nudge.toml", ref_dir, bootstrap=broker.bootstrap,
                                    topic=topic, esp_url=ref_esp.url, recovery=False)
            t = time.monotonic()
            _Run(ref_dir / "nudge.log", "run", "--config", str(ref_conf), "--bounded").finish(
                "the reference run")
            ref_seconds = time.monotonic() - t
            window = _window(ref_esp, ref_dir / "ledger")
            log(f"reference: {len(ref_esp.by_key):,} emails in {ref_seconds:.1f} s")
            for guarantee in guarantees:
                report = Report(n, partitions, guarantee, reference_seconds=ref_seconds,
                                reference_emails=len(ref_esp.by_key), window_ms=window)
                with esp_server(fault_rate=0.0, dedupe=False) as esp:
                    chaos_dir = workdir / guarantee
                    chaos_dir.mkdir()
                    conf = write_config(chaos_dir / "nudge.toml", chaos_dir,
                                        bootstrap=broker.bootstrap, topic=topic,
                                        esp_url=esp.url, recovery=True, guarantee=guarantee)
                    _Run(chaos_dir / "nudge.log", "recovery", "init", "--config", str(conf),
                         "--partitions", "1").finish("nudge recovery init")
                    report.chaos_seconds = _kill_and_resume(conf, esp, report, kills,
                                                            random.Random(seed), log)
                    _compare(report, ref_esp, esp, ref_dir, chaos_dir)
                reports.append(report)
    finally:
        broker.stop()
    return reports


def _window(esp: EspServer, ledger_dir: Path) -> tuple[float, float, float]:
    """p50, p99 and max milliseconds from the ESP's acceptance of an email to the ledger's
    record of it: what a crash must hit to leave an accepted email unrecorded."""
    import hashlib
    import statistics

    from rocksdict import AccessType, Rdict

    db = Rdict(str(ledger_dir), access_type=AccessType.read_only())
    try:
        gaps = []
        for key, value in db.items():
            digest = hashlib.sha256(key).hexdigest()[:32]
            accepted = esp.accepted_at.get(digest)
            if accepted is not None:
                gaps.append(max(0.0, orjson.loads(value)["recorded_at"] - accepted * 1000))
    finally:
        db.close()
    if len(gaps) < 2:
        return (0.0, 0.0, 0.0)
    cuts = statistics.quantiles(gaps, n=100)
    return (statistics.median(gaps), cuts[98], max(gaps))


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
    lost = ref.keys() - got.keys()
    report.lost = len(lost)
    report.extra = len(got.keys() - ref.keys())
    report.changed = sum(orjson.dumps(ref[k]) != orjson.dumps(got[k])
                         for k in ref.keys() & got.keys())
    report.resent_copies = sum(n - 1 for n in esp.copies.values())
    doubted = {hashlib.sha256(orjson.loads(d["raw"])["key"].encode()).hexdigest()[:32]
               for d in map(orjson.loads, _lines(chaos_dir / "dead-letters.delivery.jsonl"))
               if d["reason"] == "in_doubt"}
    report.in_doubt = len(doubted)
    report.in_doubt_delivered = len(doubted & got.keys())
    report.lost_unreported = len(lost - doubted)
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
    ap.add_argument("--guarantee", choices=("both", *GUARANTEES), default="both")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the runs' files here (default: a temporary directory)")
    args = ap.parse_args(argv)
    kw: dict[str, Any] = {"events": args.events, "customers": args.customers,
                          "kills": args.kills, "partitions": args.partitions,
                          "seed": args.seed,
                          "guarantees": GUARANTEES if args.guarantee == "both"
                          else (args.guarantee,)}
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=False)
        reports = chaos(workdir=args.workdir, **kw)
    else:
        with tempfile.TemporaryDirectory(prefix="nudge-chaos-") as tmp:
            reports = chaos(workdir=Path(tmp), **kw)
    for report in reports:
        print(report.format())
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
