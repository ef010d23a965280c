"""The real Bytewax dataflow: same decisions as the pure pipeline, for 1 worker, 2 workers,
2 processes, and a run killed with SIGKILL and resumed from recovery; emails once each."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main
from bytewax.testing import run_main

from nudge.core import config as config_mod
from nudge.flows.dataflow import build_flow
from nudge.flows.sinks import decision_json
from nudge.sources.files import JsonlSource
from tests.flowtools import cluster_addresses, write_config, write_partitions
from tests.harness import Pipeline
from tests.test_determinism import shoppers

ROOT = Path(__file__).resolve().parent.parent
PARTS = 3


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], list[str]]:
    """Shoppers over 3 partition files, and the decision log the pure pipeline gives."""
    d = tmp_path_factory.mktemp("data")
    records = shoppers(11, customers=60, steps=2500, gap=2.0)
    files = write_partitions(records, d, PARTS)
    cfg = config_mod.Config(shards=8)
    p = Pipeline(cfg, n_parts=PARTS)
    for i, f in enumerate(files):
        p.feed(f.read_bytes().splitlines(), part=i)
    p.end()
    expected = [orjson.dumps(decision_json(x)).decode() for x in p.decisions]
    assert len(expected) > 50 and any('"sent"' in line for line in expected)
    return files, expected


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def emails(outbox: Path) -> list[str]:
    return sorted(p.name for p in outbox.glob("*.eml"))


def run_in_process(files: list[Path], out: Path, *, workers: int = 1,
                   batch_size: int = 50) -> config_mod.Config:
    cfg = config_mod.load(write_config(out / "nudge.toml", out))
    flow = build_flow(cfg, source=JsonlSource(files, batch_size))
    if workers == 1:
        run_main(flow, epoch_interval=timedelta(milliseconds=50))
    else:
        cli_main(flow, workers_per_process=workers, epoch_interval=timedelta(milliseconds=50))
    return cfg


def test_one_worker_matches_the_pure_pipeline(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    run_in_process(files, tmp_path)
    assert lines(tmp_path / "decisions.jsonl") == expected
    sent = [line for line in expected if '"sent"' in line]
    assert len(emails(tmp_path / "outbox")) == len(sent)
    assert (tmp_path / "outbox" / "index.html").exists()


def test_two_worker_threads_give_the_same_decisions(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    run_in_process(files, tmp_path, workers=2, batch_size=17)
    assert lines(tmp_path / "decisions.jsonl") == expected


def test_a_second_run_with_the_same_ledger_sends_nothing(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    run_in_process(files, tmp_path)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").glob("*.eml")}
    assert first
    run_in_process(files, tmp_path)
    second = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "outbox").glob("*.eml")}
    assert second == first  # no file rewritten: the ledger skipped every send
    assert lines(tmp_path / "decisions.jsonl") == expected


def _bytewax_run(flow_expr: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "bytewax.run", flow_expr, *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_two_processes_give_the_same_decisions(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    conf = write_config(tmp_path / "nudge.toml", tmp_path)
    expr = f"tests.flowtools:small_batch_flow({str(conf)!r}, " + \
        ", ".join(repr(str(f)) for f in files) + ")"
    addresses = cluster_addresses(2)
    procs = [_bytewax_run(expr, "-i", str(i), "-a", addresses) for i in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out.decode()[-3000:]
    assert lines(tmp_path / "decisions.jsonl") == expected
    sent = [line for line in expected if '"sent"' in line]
    assert len(emails(tmp_path / "outbox")) == len(sent)


@pytest.mark.slow
def test_killed_and_resumed_runs_give_the_same_decisions_and_emails(dataset,
                                                                    tmp_path: Path) -> None:
    files, expected = dataset
    reference = tmp_path / "reference"
    reference.mkdir()
    run_in_process(files, reference)
    out = tmp_path / "chaos"
    out.mkdir()
    conf = write_config(out / "nudge.toml", out)
    db = out / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    file_args = ", ".join(repr(str(f)) for f in files)
    kills = 0
    for crash_after in (7, 5, 11, 3, 9):
        proc = _bytewax_run(f"tests.flowtools:crashing_flow({str(conf)!r}, {crash_after}, "
                            f"{file_args})", "-r", str(db), "-s", "0", "-b", "0")
        output, _ = proc.communicate(timeout=300)
        if proc.returncode == 0:
            break  # the input ran out before the crash point
        assert proc.returncode == -9, output.decode()[-3000:]
        kills += 1
    assert kills >= 3
    proc = _bytewax_run(f"tests.flowtools:small_batch_flow({str(conf)!r}, {file_args})",
                        "-r", str(db), "-s", "0", "-b", "0")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output.decode()[-3000:]
    assert lines(out / "decisions.jsonl") == expected
    assert emails(out / "outbox") == emails(reference / "outbox")


def test_recovery_config_is_accepted_by_run_main(dataset, tmp_path: Path) -> None:
    # The in-process path `nudge run` takes with recovery configured.
    files, expected = dataset
    db = tmp_path / "db"
    db.mkdir()
    init_db_dir(db, 1)
    cfg = config_mod.load(write_config(tmp_path / "nudge.toml", tmp_path))
    flow = build_flow(cfg, source=JsonlSource(files, 40))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(db)))
    assert lines(tmp_path / "decisions.jsonl") == expected
