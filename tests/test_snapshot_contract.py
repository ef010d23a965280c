"""Every stateful step's snapshot carries a format number; a restore refuses another one with
a SnapshotError (a NudgeError) naming the step and the formats. A snapshot without the number
is format 1, the layout before it was stamped (a bare offset, length or list for the sources
and sinks, converted), so older recovery stores still resume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nudge.core.config import Config, EventsConfig, IdentityConfig, KafkaConfig
from nudge.core.errors import NudgeError, SnapshotError
from nudge.core.records import Email
from nudge.flows.addresses import AddressShard
from nudge.flows.catalog import CatalogParseLogic
from nudge.flows.decide import Decider
from nudge.flows.deliver import DeliverySink
from nudge.flows.parse import ParseLogic
from nudge.flows.profiles import ProfileSink
from nudge.flows.sinks import LinesFileSink
from nudge.sources.catalogfiles import CatalogFileSource
from nudge.sources.files import JsonlSource
from nudge.state.identity import IdentityShard
from nudge.state.links import Fanout, LinkShard
from nudge.state.program import compile_program
from nudge.state.shard import Shard


def _restore(step: str, snap: Any) -> Any:
    if step == "parse":
        return ParseLogic(EventsConfig(), snap)
    if step == "decide":
        return Decider(4, None, snap)
    return Shard(0, compile_program(Config(shards=4)), snap)


def _snapshot(step: str) -> dict[str, Any]:
    return _restore(step, None).snapshot()


@pytest.mark.parametrize("step", ["parse", "decide", "shard"])
def test_a_snapshot_round_trips_and_an_unknown_format_is_refused_by_name(step: str) -> None:
    snap = _snapshot(step)
    assert isinstance(snap["format"], int)
    again = _restore(step, snap).snapshot()
    # (the shard's propensity model pickles to other bytes after a round trip)
    assert {k: v for k, v in again.items() if k != "shared"} == \
        {k: v for k, v in snap.items() if k != "shared"}
    with pytest.raises(NudgeError) as err:
        _restore(step, dict(snap, format=snap["format"] + 1))
    message = str(err.value)
    assert (step if step != "shard" else "shard 0") in message
    assert f"format {snap['format'] + 1}" in message and "recovery.dir" in message


@pytest.mark.parametrize("step", ["parse", "decide"])
def test_a_snapshot_from_before_the_number_is_format_1(step: str) -> None:
    snap = _snapshot(step)
    assert snap["format"] == 1
    old = {k: v for k, v in snap.items() if k != "format"}
    assert _restore(step, old).snapshot() == snap


# -- every other stateful step: today's layout restores, a later format is refused ---------

def _email() -> Email:
    return Email(key="c1\x1fcart_abandonment\x1f1\x1f1", customer_id="c1",
                 trigger="cart_abandonment", episode=1, stage=1, due=1_791_000_000_000,
                 to="c1@example.com", from_addr="Shop <shop@example.com>", subject="Your cart",
                 preheader="", html="<p>hi</p>", text="hi")


def _refused(step: str, build: Callable[[Any], Any], snap: dict[str, Any]) -> None:
    with pytest.raises(SnapshotError) as err:
        build(dict(snap, format=snap["format"] + 1))
    assert repr(step) in str(err.value) and f"format {snap['format'] + 1}" in str(err.value)


def test_a_file_partition_resumes_from_the_bare_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"one\ntwo\nthree\n")

    def build(resume: Any) -> Any:
        return JsonlSource([path], 10).build_part("nudge.sources", "file:events.jsonl", resume)

    part = build((4, 2))  # the layout main wrote before the format number: (offset, line)
    assert part.next_batch()[0][1].records == [(2, b"two"), (3, b"three")]
    snap = part.snapshot()
    part.close()
    assert snap == {"format": 2, "offset": 14, "line": 4}
    again = build(snap)
    assert again.next_batch()[0][1].records == []
    again.close()
    _refused("nudge.sources", build, snap)


def test_a_kafka_partition_resumes_from_the_bare_offset() -> None:
    from nudge.kafka.source import KafkaEventSource

    source = KafkaEventSource(KafkaConfig(brokers=("127.0.0.1:1",)), EventsConfig())
    source._parts = [0]  # the topic's partitions, as the broker would list them

    def build(resume: Any) -> Any:
        return source.build_part("nudge.sources", f"{source.config.topic}/0", resume)

    part = build(42)  # the bare offset
    try:
        assert part.snapshot() == {"format": 2, "offset": 42}
    finally:
        part.close()
    _refused("nudge.sources", build, {"format": 2, "offset": 42})


def test_a_catalog_file_partition_resumes_from_the_bare_position(tmp_path: Path) -> None:
    path = tmp_path / "products.jsonl"
    path.write_bytes(b'{"id": "p1"}\n{"id": "p2"}\n')
    source = CatalogFileSource([path])

    def build(resume: Any) -> Any:
        return source.build_part("nudge.catalog_sources", "catalog:products.jsonl", resume)

    part = build(2)  # the bare next position
    assert [pos for pos, _ in part.next_batch()[0][1].records] == [2]
    snap = part.snapshot()
    part.close()
    assert snap == {"format": 2, "next": 3}
    _refused("nudge.catalog_sources", build, snap)


def test_catalog_parse_restores_its_unnumbered_clock() -> None:
    def build(resume: Any) -> Any:
        return CatalogParseLogic(EventsConfig(), resume)

    old = {"max_ts": 1_000, "heartbeat": None}  # no number: format 1
    snap = build(old).snapshot()
    assert snap == {"format": 1, **old}
    _refused("catalog_parse", build, snap)


@pytest.mark.parametrize("step", ["links", "identity"])
def test_the_identity_steps_restore_their_layout(step: str) -> None:
    shard = LinkShard if step == "links" else IdentityShard

    def build(resume: Any) -> Any:
        return shard(0, IdentityConfig(), Fanout(4, 1, 1), resume)

    snap = build(None).snapshot()
    snap["sweep_at"] = 7
    assert snap["format"] == 1
    assert build(snap).snapshot() == snap
    assert build({k: v for k, v in snap.items() if k != "format"}).snapshot() == snap
    _refused(step, build, snap)


def test_the_addresses_step_restores_its_layout() -> None:
    snap = AddressShard(4).snapshot()
    assert AddressShard(4, snap).snapshot() == snap
    _refused("addresses", lambda resume: AddressShard(4, resume), snap)


def test_a_file_sink_resumes_from_the_bare_length(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    path.write_text("kept\ncut\n")
    sink = LinesFileSink(path)

    def build(resume: Any) -> Any:
        return sink.build_part("nudge.decision_log", str(path), resume)

    part = build(5)  # the bare length
    part.write_batch(["new"])
    snap = part.snapshot()
    part.close()
    assert path.read_text() == "kept\nnew\n" and snap == {"format": 2, "length": 9}
    _refused("nudge.decision_log", build, snap)


def test_the_deliver_sink_resubmits_the_bare_list_of_emails(tmp_path: Path) -> None:
    base = Config()
    config = dataclasses.replace(base, delivery=dataclasses.replace(
        base.delivery, outbox_dir=str(tmp_path / "outbox"), ledger_dir=str(tmp_path / "ledger")))
    sink = DeliverySink(config, tmp_path / "dead.jsonl")

    def build(resume: Any) -> Any:
        return sink.build_part("nudge.deliver", "deliver", resume)

    part = build([_email()])  # the bare list of emails in flight
    snap = part.snapshot()
    part.close()
    assert snap["format"] == 2 and snap["in_flight"] in ([], [_email()])
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    _refused("nudge.deliver", build, snap)


def test_the_profiles_sink_has_a_format_too(tmp_path: Path) -> None:
    sink = ProfileSink(str(tmp_path / "profiles"))

    def build(resume: Any) -> Any:
        return sink.build_part("nudge.profiles", "profiles", resume)

    part = build(None)
    snap = part.snapshot()
    part.close()
    assert snap == {"format": 1}
    build(snap).close()
    _refused("nudge.profiles", build, snap)
