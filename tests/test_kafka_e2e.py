"""End to end on a real Kafka-protocol broker: events produced with kafka-python ->
`nudge run` -> decisions, emails and dead letters on topics and in the outbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from nudge.core.timefmt import to_iso
from tests.broker import Broker
from tests.events import add, identify, view
from tests.flowtools import write_config
from tests.harness import Pipeline
from tests.test_determinism import shoppers

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.broker


def nudge(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nudge", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def kafka_config(tmp: Path, broker: Broker, topic: str, **extra: dict) -> Path:
    sections: dict[str, dict] = {
        "kafka": {"brokers": [broker.bootstrap], "topic": topic,
                  "dead_letter_topic": f"{topic}-dlq", "decisions_topic": f"{topic}-decisions",
                  "email_topic": f"{topic}-emails", "batch_size": 100},
        "outputs": {"decisions": "kafka", "dead_letters": "kafka"},
    }
    for k, v in extra.items():
        sections.setdefault(k, {}).update(v)
    return write_config(tmp / "nudge.toml", tmp, shards=8, **sections)


@pytest.mark.parametrize("transport", ["kafka", "outbox"])
def test_bounded_run_from_kafka(broker: Broker, tmp_path: Path, transport: str) -> None:
    topic = broker.create_topic(f"shop-{transport}", partitions=3)
    for suffix in ("dlq", "decisions", "emails"):
        broker.create_topic(f"{topic}-{suffix}")
    records = shoppers(5, customers=30, steps=600, gap=3.0)
    bad = [b"{not json", b"[1,2]", b'{"type":"track","event":"Nope","userId":"x",'
           b'"timestamp":"2026-10-05T10:00:00Z"}']
    produced = [(user.encode(), raw) for user, raw in records] + [(b"x", b) for b in bad]
    broker.produce(topic, produced)

    conf = kafka_config(tmp_path, broker, topic, delivery={"transport": transport})
    result = nudge("run", "--config", str(conf), "--bounded")
    assert result.returncode == 0, result.stderr[-3000:]

    # The same decisions as the pure pipeline, per partition order (decide sorts them).
    decisions = [orjson.loads(v) for *_, v, _ in broker.consume_all(f"{topic}-decisions")]
    by_part: dict[int, list[bytes]] = {}
    for p, _, _, value, _ in broker.consume_all(topic):
        by_part.setdefault(p, []).append(value)
    pipe = Pipeline(n_parts=len(by_part))
    pipe.config = pipe.config  # defaults, shards differ but shard count does not matter
    for i, part in enumerate(sorted(by_part)):
        pipe.feed(by_part[part], part=i)
    pipe.end()
    expected = [{"customer_id": d.customer_id, "trigger": d.trigger, "episode": d.episode,
                 "stage": d.stage, "due": to_iso(d.due), "outcome": d.outcome,
                 "reason": d.reason} for d in pipe.decisions]
    assert decisions == expected
    sent = [d for d in decisions if d["outcome"] == "sent"]
    assert sent

    if transport == "kafka":
        emails = [orjson.loads(v) for *_, v, _ in broker.consume_all(f"{topic}-emails")]
        assert sorted((e["customer_id"], e["episode"], e["stage"]) for e in emails) == \
            sorted((d["customer_id"], d["episode"], d["stage"]) for d in sent)
        assert all("<html" in e["html"] and e["subject"] for e in emails)
    else:
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == len(sent)

    dlq = broker.consume_all(f"{topic}-dlq")
    assert sorted(v for *_, v, _ in dlq) == sorted(bad)
    for *_, headers in dlq:
        h = dict(headers)
        assert h["__connect.errors.topic"] == topic.encode()
        assert int(h["__connect.errors.offset"]) >= 0
        assert h["__connect.errors.exception.class.name"] in (
            b"invalid_json", b"not_an_object", b"unknown_event")
        assert h["__connect.errors.exception.message"]


def test_live_run_sends_a_due_stage_within_seconds(broker: Broker, tmp_path: Path) -> None:
    """Tail mode: the partition goes idle, heartbeats move event time with the wall clock,
    and the stage due a few seconds from now is sent without any further event."""
    topic = broker.create_topic("shop-live", partitions=1)
    for suffix in ("dlq", "decisions", "emails"):
        broker.create_topic(f"{topic}-{suffix}")
    now = time.time()
    base = to_iso(int((now - 3600 + 4) * 1000))  # last cart activity: due in 4 s
    broker.produce(topic, [(b"u", identify("u", 0, base=base)), (b"u", add("u", 0, base=base)),
                           (b"z", view("z", 0.01, base=base))])
    conf = kafka_config(tmp_path, broker, topic, events={"allowed_lateness": "1s"},
                        delivery={"transport": "kafka"})
    proc = subprocess.Popen([sys.executable, "-m", "nudge", "run", "--config", str(conf)],
                            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        emails: list = []
        deadline = time.time() + 60
        while not emails and time.time() < deadline:
            time.sleep(1)
            emails = broker.consume_all(f"{topic}-emails")
    finally:
        proc.kill()
        out = proc.communicate()[0].decode()
    assert emails, out[-3000:]
    email = orjson.loads(emails[0][3])
    assert email["customer_id"] == "u" and email["stage"] == 1
    # No event follows the cart: only the idle partition's heartbeats moved event time past
    # the stage's due instant, so the email proves them (no wall-clock bound asserted).


def test_delivery_dead_letters_go_to_the_dead_letter_topic(broker: Broker, tmp_path: Path) -> None:
    """An ESP that refuses every send (400): each refusal is a dead letter on the DLQ topic,
    next to bad input, with stage `deliver` and the reason in the headers."""
    from tests.servers import esp_server

    topic = broker.create_topic("shop-esp-dlq", partitions=1)
    for suffix in ("dlq", "decisions", "emails"):
        broker.create_topic(f"{topic}-{suffix}")
    broker.produce(topic, [(b"u", identify("u", 0)), (b"u", add("u", 1)),
                           (b"z", view("z", 200)), (b"x", b"{broken")])
    with esp_server(script=["400"] * 10, fault_rate=0.0) as esp:
        conf = kafka_config(tmp_path, broker, topic, delivery={"transport": "esp"})
        text = conf.read_text() + f'[delivery.esp]\nurl = "{esp.url}"\nmax_attempts = 2\n'
        conf.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "nudge", "run", "--config", str(conf), "--bounded"],
            cwd=ROOT, text=True, capture_output=True, timeout=300, check=False,
            env=dict(os.environ, PYTHONPATH=str(ROOT), NUDGE_ESP_API_KEY="k"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert len(esp.requests) == 1  # permanent: not retried
    stages = sorted(dict(h)["nudge.errors.stage"] for *_, h in broker.consume_all(f"{topic}-dlq"))
    assert stages == [b"deliver", b"parse"]
    deliver = next(h for *_, h in broker.consume_all(f"{topic}-dlq")
                   if dict(h)["nudge.errors.stage"] == b"deliver")
    assert dict(deliver)["__connect.errors.exception.class.name"] == b"permanent_failure"
