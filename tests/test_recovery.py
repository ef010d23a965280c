"""Recovery across a change of worker count (rescale) and in a 2-process cluster: a run
SIGKILLed mid-run and resumed with another number of workers or processes writes exactly the
decision log of the pure pipeline and exactly the emails (names and bytes) of an
uninterrupted run.

Each crash is checked to be a real mid-run crash: the process that killed itself ended by
SIGKILL (-9), and some but not all decisions and emails were out before the final run. Each
final run is checked to be a real resume, not a start from scratch: every source partition
was opened with a resume state (tests.flowtools:resume_logging_flow logs them), and Bytewax's
recovery database records one execution per run with the worker count it had and a
resume epoch that grows (the `exs` table of the recovery partitions, Bytewax 0.21.1).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from bytewax.recovery import init_db_dir

from nudge.core import config as config_mod
from nudge.delivery.ledger import Ledger
from nudge.flows.sinks import decision_json
from tests.flowtools import cluster_addresses, write_config, write_partitions
from tests.harness import Pipeline
from tests.test_determinism import shoppers

ROOT = Path(__file__).resolve().parent.parent
PARTS = 3
RECOVERY_TIMES = ("-s", "0", "-b", "0")  # snapshot every epoch, keep no older snapshots
TIMEOUT = 120  # seconds, for any one bytewax process (each takes a few seconds)
SURVIVOR_TIMEOUT = 30  # for the cluster process that did not kill itself to exit


@dataclass
class Data:
    files: list[Path]
    expected: list[str]  # the decision log of the pure pipeline
    reference: Path  # an uninterrupted run's output directory
    emails: dict[str, bytes]  # the uninterrupted run's emails


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def emails(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "outbox").glob("*.eml"))}


class Procs:
    """Starts `python -m bytewax.run` processes; kills (by pid) any left at teardown."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, flow_expr: str, *args: str) -> subprocess.Popen[bytes]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        p = subprocess.Popen([sys.executable, "-m", "bytewax.run", flow_expr, *args],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        self.started.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.started:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.cleanup()


def finish(p: subprocess.Popen[bytes], timeout: float = TIMEOUT) -> tuple[int, str]:
    out, _ = p.communicate(timeout=timeout)
    return p.returncode, out.decode(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    """Shoppers over 3 partition files (as in test_flow), the decision log the pure pipeline
    gives, and an uninterrupted 1-worker run without recovery for the emails."""
    d = tmp_path_factory.mktemp("recovery-data")
    records = shoppers(11, customers=60, steps=2500, gap=2.0)
    files = write_partitions(records, d, PARTS)
    p = Pipeline(config_mod.Config(shards=8), n_parts=PARTS)
    for i, f in enumerate(files):
        p.feed(f.read_bytes().splitlines(), part=i)
    p.end()
    expected = [orjson.dumps(decision_json(x)).decode() for x in p.decisions]
    assert len(expected) > 50 and any('"sent"' in line for line in expected)

    reference = d / "reference"
    reference.mkdir()
    conf = write_config(reference / "nudge.toml", reference)
    ps = Procs()
    try:
        rc, output = finish(ps.start(f"tests.flowtools:small_batch_flow({str(conf)!r}, "
                                     + ", ".join(repr(str(f)) for f in files) + ")"))
    finally:
        ps.cleanup()
    assert rc == 0, output
    assert lines(reference / "decisions.jsonl") == expected
    mails = emails(reference)
    assert len(mails) == sum('"sent"' in line for line in expected) > 10
    return Data(files, expected, reference, mails)


class Chaos:
    """One output directory, config and recovery directory, and the flow expressions."""

    def __init__(self, data: Data, out: Path, db_parts: int) -> None:
        self.data = data
        self.out = out
        out.mkdir()
        self.db = out / "recovery"
        # the shards' customer stores live under it (nudge/state/customerdb.py)
        self.conf = write_config(out / "nudge.toml", out, recovery={"dir": str(self.db)})
        self.db.mkdir()
        self.db_parts = db_parts
        init_db_dir(self.db, db_parts)
        self.resume_log = out / "resume-states.jsonl"
        self.file_args = ", ".join(repr(str(f)) for f in data.files)
        self.recovery = ("-r", str(self.db), *RECOVERY_TIMES)

    def crashing(self, crash_after: int) -> str:
        return f"tests.flowtools:crashing_flow({str(self.conf)!r}, {crash_after}, " \
               f"{self.file_args})"

    def plain(self) -> str:
        return f"tests.flowtools:small_batch_flow({str(self.conf)!r}, {self.file_args})"

    def logging(self) -> str:
        return f"tests.flowtools:resume_logging_flow({str(self.conf)!r}, " \
               f"{str(self.resume_log)!r}, {self.file_args})"

    def executions(self) -> list[tuple[int, int, int]]:
        """(execution, worker count, resume epoch) of every run, from Bytewax's recovery
        partitions (each execution is recorded in one of them)."""
        rows: list[tuple[int, int, int]] = []
        parts = sorted(self.db.glob("part-*.sqlite3"))
        assert len(parts) == self.db_parts, parts
        for part in parts:
            con = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
            try:
                rows += con.execute("SELECT ex_num, worker_count, resume_epoch FROM exs")
            finally:
                con.close()
        return sorted(rows)

    def opened_by(self) -> set[int]:
        """The processes that opened source partitions in the final run."""
        return {orjson.loads(x)["pid"] for x in lines(self.resume_log)}

    def check_mid_run(self) -> None:
        """After a crash: some but not all output is out, and what is out is right."""
        full = "".join(line + "\n" for line in self.data.expected)
        got = (self.out / "decisions.jsonl").read_text()
        assert got, "no decision written before the crash"
        assert len(got) < len(full), "every decision written before the crash"
        assert full.startswith(got), "the decisions before the crash are not a prefix"
        mails = emails(self.out)
        assert 0 < len(mails) < len(self.data.emails), len(mails)
        for name, body in mails.items():
            assert self.data.emails.get(name) == body, name

    def check_final(self, worker_counts: list[int]) -> None:
        """After the final run: the whole output, and that it resumed each time."""
        ref = self.data.reference
        # the customers were kept in the shards' stores on disk, not in the snapshots
        assert len(list((self.db / "customers").glob("shard-*/CURRENT"))) == 8
        assert lines(self.out / "decisions.jsonl") == self.data.expected
        assert emails(self.out) == self.data.emails  # same names, same bytes
        outbox, ref_outbox = self.out / "outbox", ref / "outbox"
        assert sorted(p.name for p in outbox.iterdir()) == \
            sorted(p.name for p in ref_outbox.iterdir())  # index.html, and no stray .tmp
        assert (outbox / "index.html").read_bytes() == (ref_outbox / "index.html").read_bytes()
        ledger = Ledger(self.out / "ledger")
        try:
            assert ledger.count() == len(self.data.emails)
        finally:
            ledger.close()
        assert lines(self.out / "dead-letters.jsonl") == lines(ref / "dead-letters.jsonl")
        for name in ("segments.jsonl", "outcomes.jsonl"):
            assert sorted(lines(self.out / name)) == sorted(lines(ref / name)), name
        # The final run opened every source partition at a snapshotted position, not at the
        # start, and not all of them at the end.
        opened = [orjson.loads(x) for x in lines(self.resume_log)]
        assert sorted(o["part"] for o in opened) == sorted(f"file:{f.name}"
                                                           for f in self.data.files), opened
        by_name = {f"file:{f.name}": f for f in self.data.files}
        left = 0
        for o in opened:
            assert o["resume"] is not None, f"{o['part']} started from scratch"
            offset, next_line = o["resume"]["offset"], o["resume"]["line"]
            raw = by_name[o["part"]].read_bytes()
            assert 0 < offset <= len(raw), o
            assert raw[:offset].count(b"\n") == next_line - 1 and raw[offset - 1:offset] == \
                b"\n", o  # a line boundary, numbered right
            left += len(raw) - offset
        assert left > 0, "the crashed runs had read all input"
        # One execution per run, with the worker count it had, each resuming further on.
        exs = self.executions()
        assert [e[0] for e in exs] == list(range(len(worker_counts))), exs
        assert [e[1] for e in exs] == worker_counts, exs
        epochs = [e[2] for e in exs]
        assert epochs[0] == 1 and epochs == sorted(set(epochs)), exs


def crash_threads(procs: Procs, chaos: Chaos, crash_after: int, workers: int) -> None:
    rc, output = finish(procs.start(chaos.crashing(crash_after), *chaos.recovery,
                                    "-w", str(workers)))
    assert rc == -9, f"expected a SIGKILL mid-run, got {rc}: {output}"


def final_threads(procs: Procs, chaos: Chaos, workers: int) -> None:
    p = procs.start(chaos.logging(), *chaos.recovery, "-w", str(workers))
    rc, output = finish(p)
    assert rc == 0, output
    assert chaos.opened_by() == {p.pid}


def crash_cluster(procs: Procs, chaos: Chaos, crash_after: int) -> None:
    """A 2-process cluster whose process 0 SIGKILLs itself; process 1 then exits too (or is
    killed here after SURVIVOR_TIMEOUT). Both are gone before this returns."""
    addresses = cluster_addresses(2)
    crasher = procs.start(chaos.crashing(crash_after), *chaos.recovery,
                          "-i", "0", "-a", addresses)
    survivor = procs.start(chaos.plain(), *chaos.recovery, "-i", "1", "-a", addresses)
    try:
        rc, output = finish(crasher)
        assert rc == -9, f"expected process 0 to SIGKILL itself mid-run, got {rc}: {output}"
        try:
            rc, output = finish(survivor, SURVIVOR_TIMEOUT)
        except subprocess.TimeoutExpired:
            survivor.kill()
            rc, output = finish(survivor)
        assert rc != 0, f"process 1 finished although process 0 was killed: {output}"
    finally:
        procs.cleanup()


def final_cluster(procs: Procs, chaos: Chaos) -> None:
    addresses = cluster_addresses(2)
    cluster = [procs.start(chaos.logging(), *chaos.recovery, "-i", str(i), "-a", addresses)
               for i in range(2)]
    for i, p in enumerate(cluster):
        rc, output = finish(p)
        assert rc == 0, f"process {i}: {output}"
    assert chaos.opened_by() <= {p.pid for p in cluster}


@pytest.mark.slow
@pytest.mark.parametrize("db_parts", [1, 2], ids=lambda n: f"{n}-recovery-parts")
def test_rescale_up_killed_with_one_worker_resumed_with_two(data: Data, tmp_path: Path,
                                                            procs: Procs,
                                                            db_parts: int) -> None:
    chaos = Chaos(data, tmp_path / "chaos", db_parts)
    crash_threads(procs, chaos, 30, workers=1)
    chaos.check_mid_run()
    final_threads(procs, chaos, workers=2)
    chaos.check_final([1, 2])


@pytest.mark.slow
@pytest.mark.parametrize("db_parts", [1, 2], ids=lambda n: f"{n}-recovery-parts")
def test_rescale_down_killed_with_two_workers_resumed_with_one(data: Data, tmp_path: Path,
                                                               procs: Procs,
                                                               db_parts: int) -> None:
    chaos = Chaos(data, tmp_path / "chaos", db_parts)
    crash_threads(procs, chaos, 30, workers=2)
    chaos.check_mid_run()
    final_threads(procs, chaos, workers=1)
    chaos.check_final([2, 1])


@pytest.mark.slow
def test_killed_again_after_each_rescale(data: Data, tmp_path: Path, procs: Procs) -> None:
    # 1 worker, killed; resumed with 3, killed; resumed with 2, killed; resumed with 1.
    chaos = Chaos(data, tmp_path / "chaos", 3)
    for crash_after, workers in ((15, 1), (15, 3), (15, 2)):
        crash_threads(procs, chaos, crash_after, workers)
        chaos.check_mid_run()
    final_threads(procs, chaos, workers=1)
    chaos.check_final([1, 3, 2, 1])


@pytest.mark.slow
@pytest.mark.parametrize("db_parts", [1, 2], ids=lambda n: f"{n}-recovery-parts")
def test_two_process_cluster_killed_and_restarted(data: Data, tmp_path: Path, procs: Procs,
                                                 db_parts: int) -> None:
    chaos = Chaos(data, tmp_path / "chaos", db_parts)
    crash_cluster(procs, chaos, 15)
    chaos.check_mid_run()
    final_cluster(procs, chaos)
    chaos.check_final([2, 2])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2], ids=lambda n: f"{n}-workers")
def test_two_process_cluster_killed_and_resumed_as_one_process(data: Data, tmp_path: Path,
                                                               procs: Procs,
                                                               workers: int) -> None:
    chaos = Chaos(data, tmp_path / "chaos", 2)
    crash_cluster(procs, chaos, 15)
    chaos.check_mid_run()
    final_threads(procs, chaos, workers=workers)
    chaos.check_final([2, workers])
