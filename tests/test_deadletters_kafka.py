"""`nudge deadletters replay` on Kafka input, on the tansu broker: dead letters on the DLQ
topic from a bounded run with a too-small `events.max_payload_bytes`; the config fixed,
they go back to the end of their original partitions keyed by customer id; the flow,
resumed from recovery, decides on them at its watermark; a second replay re-feeds nothing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from nudge.core.timefmt import parse_iso, to_iso
from tests.broker import Broker
from tests.events import T0, add, identify, view
from tests.test_deadletters import big_add, big_identify, big_view
from tests.test_kafka_e2e import kafka_config, nudge

pytestmark = pytest.mark.broker


def test_kafka_round_trip_refeeds_into_the_original_partition_once(broker: Broker,
                                                                   tmp_path: Path) -> None:
    topic = broker.create_topic("shop-dlr", partitions=2)
    for suffix in ("dlq", "decisions", "emails"):
        broker.create_topic(f"{topic}-{suffix}")
    shoppers = [("a", identify("a", 0)), ("a", add("a", 1)), ("b", big_identify("b", 2)),
                ("b", big_add("b", 3)), ("a", view("a", 200)), ("b", big_view("b", 201)),
                ("c", b"{broken")]
    broker.produce(topic, [(user.encode(), raw) for user, raw in shoppers])
    original = broker.consume_all(topic)
    b_part = {p for p, _, key, _, _ in original if key == b"b"}
    assert len(b_part) == 1

    # two configs, one set of state: recovery, ledger and replay store are shared
    extra = {"recovery": {"dir": str(tmp_path / "recovery")},
             "delivery": {"ledger_dir": str(tmp_path / "ledger")},
             "dead_letter_replay": {"state_dir": str(tmp_path / "replayed")}}
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    bad = kafka_config(tmp_path / "bad", broker, topic, events={"max_payload_bytes": 400},
                       **extra)
    good = kafka_config(tmp_path / "good", broker, topic, **extra)
    r = nudge("recovery", "init", "--config", str(bad))
    assert r.returncode == 0, r.stderr
    r = nudge("run", "--config", str(bad), "--bounded")
    assert r.returncode == 0, r.stderr[-3000:]
    dlq = broker.consume_all(f"{topic}-dlq")
    assert len(dlq) == 4  # b's three records and c's broken one
    assert {orjson.loads(v)["customer_id"] for *_, v, _ in
            broker.consume_all(f"{topic}-decisions")} == {"a"}

    r = nudge("deadletters", "replay", "--config", str(good), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"{topic}[{next(iter(b_part))}]" in r.stdout and "re-fed                 3" in r.stdout
    assert len(broker.consume_all(topic)) == len(original)  # nothing produced

    r = nudge("deadletters", "replay", "--config", str(good))  # default: the DLQ topic
    assert r.returncode == 0, r.stderr
    assert "re-fed                 3" in r.stdout
    assert "invalid_json                  1  " + topic in r.stdout
    assert "b" not in {w for line in r.stdout.splitlines() for w in line.split()}
    after = broker.consume_all(topic)
    refed = after[len(original):]
    # b's records, byte for byte, in their order, at the end of b's own partition
    assert [(p, key, value) for p, _, key, value, _ in refed] == \
        [(next(iter(b_part)), b"b", raw) for user, raw in shoppers if user == "b"]
    origins = [dict(h)["nudge.replay.of"].decode() for *_, h in refed]
    assert origins == sorted(origins) and all(o.startswith(f"{topic}[") for o in origins)

    # Live traffic moves on; the flow resumes from recovery and reads only what is new.
    later = to_iso(parse_iso(T0) + 10 * 3600_000)
    broker.produce(topic, [(b"z", view("z", 0, base=later))])
    r = nudge("run", "--config", str(good), "--bounded")
    assert r.returncode == 0, r.stderr[-3000:]
    decided = [orjson.loads(v) for *_, v, _ in broker.consume_all(f"{topic}-decisions")]
    b_decisions = [d for d in decided if d["customer_id"] == "b"]
    assert [(d["outcome"], d["stage"]) for d in b_decisions] == [("sent", 1)]
    # applied at the partition's watermark (not at 10:03): due an hour after that
    assert parse_iso(b_decisions[0]["due"]) > parse_iso(T0) + 200 * 60_000
    assert len(broker.consume_all(f"{topic}-dlq")) == 4  # nothing failed again

    r = nudge("deadletters", "replay", "--config", str(good))
    assert r.returncode == 0, r.stderr
    assert "re-fed                 0" in r.stdout and "already re-fed         3" in r.stdout
    assert len(broker.consume_all(topic)) == len(after) + 1
