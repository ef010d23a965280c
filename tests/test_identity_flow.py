"""Identity in the real Bytewax dataflow: merges give the pure pipeline's decisions for 1 and
2 workers, a 2-process cluster, and runs SIGKILLed (once between a link and its merge)
and resumed from recovery with another worker or process count."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.run import cli_main
from bytewax.testing import run_main

from nudge.core import config as config_mod
from nudge.flows.dataflow import build_flow
from nudge.flows.sinks import decision_json
from nudge.sources.files import JsonlSource
from tests.flowtools import write_config, write_partitions
from tests.harness import Pipeline
from tests.test_determinism import identity_shoppers
from tests.test_recovery import (
    Chaos,
    Data,
    Procs,
    crash_cluster,
    crash_threads,
    emails,
    final_cluster,
    final_threads,
    finish,
    lines,
)

PARTS = 3


@pytest.fixture(scope="module")
def identity_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Data, int]:
    """Identity shoppers over 3 partition files, the pure pipeline's decision log, an
    uninterrupted run's output, and the number of links the pipeline made."""
    d = tmp_path_factory.mktemp("identity-data")
    records = identity_shoppers(11, customers=40, steps=2000, gap=2.0)
    files = write_partitions(records, d, PARTS)
    p = Pipeline(config_mod.Config(shards=8), n_parts=PARTS)
    for i, f in enumerate(files):
        p.feed(f.read_bytes().splitlines(), part=i)
    p.end()
    expected = [orjson.dumps(decision_json(x)).decode() for x in p.decisions]
    merges = sum(s.stats["merges"] for s in p.identity)
    assert merges > 20 and any('"sent"' in x and '"customer_id":"u' in x for x in expected)
    assert {d.reason for d in p.dead} >= {"already_linked"}

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
    assert len(mails) == sum('"sent"' in line for line in expected) > 5
    links = sum(s.stats["links"] for s in p.links)
    return Data(files, expected, reference, mails), links


class IdentityChaos(Chaos):
    def check_final(self, worker_counts: list[int]) -> None:
        # Identity dead letters come from two steps on any worker: the same set, in any
        # order between steps (each step's own order is the event order).
        ref = self.data.reference / "dead-letters.jsonl"
        got = self.out / "dead-letters.jsonl"
        assert sorted(lines(got)) == sorted(lines(ref))
        got.write_text(ref.read_text())
        super().check_final(worker_counts)


def test_one_and_two_workers_match_the_pure_pipeline(identity_data, tmp_path: Path) -> None:
    data, _ = identity_data
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        cfg = config_mod.load(write_config(out / "nudge.toml", out))
        flow = build_flow(cfg, source=JsonlSource(data.files, 40))
        if workers == 1:
            run_main(flow, epoch_interval=timedelta(milliseconds=50))
        else:
            cli_main(flow, workers_per_process=2, epoch_interval=timedelta(milliseconds=50))
        assert lines(out / "decisions.jsonl") == data.expected, workers
        assert emails(out) == data.emails
        assert sorted(lines(out / "dead-letters.jsonl")) == \
            sorted(lines(data.reference / "dead-letters.jsonl"))


@pytest.mark.slow
def test_killed_between_a_link_and_its_merge_and_resumed_with_two_workers(
        identity_data, tmp_path: Path) -> None:
    data, links = identity_data
    chaos = IdentityChaos(data, tmp_path / "chaos", 2)
    flag = tmp_path / "crashed"
    procs = Procs()
    try:
        expr = (f"tests.flowtools:link_crashing_flow({str(chaos.conf)!r}, {str(flag)!r}, "
                f"{links // 2}, {chaos.file_args})")
        rc, output = finish(procs.start(expr, *chaos.recovery))
        assert rc == -9 and flag.exists(), f"expected a SIGKILL at a link, got {rc}: {output}"
        got = (chaos.out / "decisions.jsonl").read_text() if \
            (chaos.out / "decisions.jsonl").exists() else ""
        assert "".join(x + "\n" for x in data.expected).startswith(got)
        assert len(got.splitlines()) < len(data.expected)
        final_threads(procs, chaos, workers=2)
    finally:
        procs.cleanup()
    chaos.check_final([1, 2])


@pytest.mark.slow
def test_rescale_killed_with_two_workers_resumed_with_one(identity_data, tmp_path: Path) -> None:
    data, _ = identity_data
    chaos = IdentityChaos(data, tmp_path / "chaos", 2)
    procs = Procs()
    try:
        crash_threads(procs, chaos, 30, workers=2)
        chaos.check_mid_run()
        final_threads(procs, chaos, workers=1)
    finally:
        procs.cleanup()
    chaos.check_final([2, 1])


@pytest.mark.slow
def test_two_process_cluster_killed_and_restarted(identity_data, tmp_path: Path) -> None:
    data, _ = identity_data
    chaos = IdentityChaos(data, tmp_path / "chaos", 2)
    procs = Procs()
    try:
        crash_cluster(procs, chaos, 20)
        chaos.check_mid_run()
        final_cluster(procs, chaos)
    finally:
        procs.cleanup()
    chaos.check_final([2, 2])




def test_inspect_shows_linked_ids_and_where_the_cart_came_from(tmp_path: Path) -> None:
    from nudge.app.inspection import profile
    from tests.events import anon, anon_add, login, product, view

    records = [anon("Product Viewed", "a1", 0, product("sku-1")), anon_add("a1", 1, "sku-1"),
               login("u1", "a1", 2, email="ann@example.com"),
               anon_add("a1", 3, "sku-2"),  # after the link: the user's, via the anonymous id
               view("u1", 4, "sku-3"), view("other", 300)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(r + b"\n" for r in records))
    cfg = config_mod.load(write_config(tmp_path / "nudge.toml", tmp_path))
    run_main(build_flow(cfg, source=JsonlSource([path], 2)))
    ident = profile(cfg, "u1")["identity"]
    assert ident["namespace"] == "user"
    [link] = ident["linked_anonymous_ids"]
    assert (link["anonymous_id"], link["merged_events"], link["cart_lines_brought"],
            link["events_after_link"]) == ("a1", {"product_viewed": 1, "product_added": 1},
                                           ["sku-1", "sku-2"], 1)
    assert link["linked_at"] == "2026-10-05T10:02:00Z"
    assert {line["product_id"]: line["from"] for line in ident["cart"]} == {
        "sku-1": "anonymous id a1", "sku-2": "anonymous id a1"}
    assert profile(cfg, "u1")["recent_decisions"][0]["outcome"] == "sent"
