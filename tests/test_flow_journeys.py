"""Every journey, segment, the model, recommendations and experiments at once (the demo's
config), through the real Bytewax dataflow: the same decisions, segment changes, outcomes
and byte-identical emails as the pure pipeline, for 1 worker, 2 workers, 2 processes and a
run killed with SIGKILL and resumed from recovery."""

from __future__ import annotations

import zlib
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.recovery import init_db_dir
from bytewax.run import cli_main
from bytewax.testing import run_main

from nudge.app import sample
from nudge.app.runflow import DEMO_CONFIG
from nudge.core import config as config_mod
from nudge.flows.dataflow import build_flow
from nudge.flows.sinks import decision_json, outcome_line, segment_line
from nudge.sources.files import JsonlSource
from tests.flowtools import cluster_addresses
from tests.harness import Pipeline
from tests.test_flow import _bytewax_run, lines

PARTS = 3


def demo_config(path: Path, out: Path) -> Path:
    """The demo's journeys and segments, with every output under `out`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = DEMO_CONFIG.read_text().split("\n[outputs]")[0].replace("shards = 16", "shards = 8")
    text = text.replace('"catalog.csv"', f'"{DEMO_CONFIG.parent / "catalog.csv"}"')
    path.write_text(text + f"""
[outputs]
decisions = "{out / 'decisions.jsonl'}"
dead_letters = "{out / 'dead-letters.jsonl'}"
segments = "{out / 'segments.jsonl'}"
outcomes = "{out / 'outcomes.jsonl'}"
profiles = "{out / 'profiles'}"
[delivery]
transport = "outbox"
outbox_dir = "{out / 'outbox'}"
ledger_dir = "{out / 'ledger'}"
[render]
strict = true
""")
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, list[str]]]:
    """Shoppers (returning customers with old orders among them) over 3 partition files, and
    what the pure pipeline makes of them."""
    d = tmp_path_factory.mktemp("journeys")
    files = [d / f"events-{i}.jsonl" for i in range(PARTS)]
    handles = [f.open("wb") for f in files]
    for raw in sample.iter_events(customers=260, days=6, seed=11, bad_ratio=0.002):
        try:
            user = orjson.loads(raw).get("userId") or orjson.loads(raw).get("anonymousId") or ""
        except (orjson.JSONDecodeError, AttributeError):
            user = ""
        handles[zlib.crc32(str(user).encode()) % PARTS].write(raw + b"\n")
    for h in handles:
        h.close()
    cfg = config_mod.load(demo_config(d / "nudge.toml", d / "pure"))
    p = Pipeline(cfg, n_parts=PARTS)
    for i, f in enumerate(files):
        p.feed(f.read_bytes().splitlines(), part=i)
    p.end()
    expected = {
        "decisions": [orjson.dumps(decision_json(x)).decode() for x in p.decisions],
        "segments": sorted(segment_line(s) for s in p.segments),
        "outcomes": sorted(outcome_line(o) for o in p.outcomes),
    }
    triggers = {orjson.loads(x)["trigger"] for x in expected["decisions"]}
    assert triggers == {"cart_abandonment", "browse_abandonment", "post_purchase", "win_back",
                        "welcome"}, triggers
    assert any('"variant"' in x for x in expected["decisions"])
    assert any('"holdout"' in x for x in expected["decisions"])
    assert len(expected["segments"]) > 50 and len(expected["outcomes"]) > 50
    return files, expected


def outputs(out: Path) -> dict[str, list[str]]:
    return {"decisions": lines(out / "decisions.jsonl"),
            "segments": sorted(lines(out / "segments.jsonl")),
            "outcomes": sorted(lines(out / "outcomes.jsonl"))}


def emails(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "outbox").glob("*.eml"))}


def run(files: list[Path], out: Path, workers: int = 1, batch: int = 40) -> None:
    cfg = config_mod.load(demo_config(out / "nudge.toml", out))
    flow = build_flow(cfg, source=JsonlSource(files, batch))
    if workers == 1:
        run_main(flow, epoch_interval=timedelta(milliseconds=50))
    else:
        cli_main(flow, workers_per_process=workers, epoch_interval=timedelta(milliseconds=50))


def test_one_worker_matches_the_pure_pipeline(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    run(files, tmp_path)
    assert outputs(tmp_path) == expected
    sent = [x for x in expected["decisions"] if '"sent"' in x]
    mails = emails(tmp_path)
    assert len(mails) == len(sent)
    # recommendations made it into the emails
    assert sum(b"You might also like" in m or b"also liked" in m for m in mails.values()) > 5


def test_two_worker_threads_same_outputs_and_the_same_email_bytes(dataset,
                                                                  tmp_path: Path) -> None:
    files, expected = dataset
    one, two = tmp_path / "one", tmp_path / "two"
    run(files, one)
    run(files, two, workers=2, batch=13)
    assert outputs(two) == expected
    assert emails(two) == emails(one)


@pytest.mark.slow
def test_two_processes_same_outputs_and_emails(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    reference = tmp_path / "reference"
    run(files, reference)
    out = tmp_path / "cluster"
    out.mkdir()
    conf = demo_config(out / "nudge.toml", out)
    expr = f"tests.flowtools:small_batch_flow({str(conf)!r}, " + \
        ", ".join(repr(str(f)) for f in files) + ")"
    addresses = cluster_addresses(2)
    procs = [_bytewax_run(expr, "-i", str(i), "-a", addresses) for i in range(2)]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output.decode()[-3000:]
    assert outputs(out) == expected
    assert emails(out) == emails(reference)


@pytest.mark.slow
def test_killed_and_resumed_same_outputs_and_emails(dataset, tmp_path: Path) -> None:
    files, expected = dataset
    reference = tmp_path / "reference"
    run(files, reference)
    out = tmp_path / "chaos"
    out.mkdir()
    conf = demo_config(out / "nudge.toml", out)
    db = out / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    file_args = ", ".join(repr(str(f)) for f in files)
    kills = 0
    for crash_after in (9, 4, 13, 6, 11, 3):
        proc = _bytewax_run(f"tests.flowtools:crashing_flow({str(conf)!r}, {crash_after}, "
                            f"{file_args})", "-r", str(db), "-s", "0", "-b", "0")
        output, _ = proc.communicate(timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -9, output.decode()[-3000:]
        kills += 1
    assert kills >= 3
    proc = _bytewax_run(f"tests.flowtools:small_batch_flow({str(conf)!r}, {file_args})",
                        "-r", str(db), "-s", "0", "-b", "0")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output.decode()[-3000:]
    assert outputs(out) == expected
    assert emails(out) == emails(reference)
