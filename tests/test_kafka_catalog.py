"""The catalog topic on the real broker, through the dataflow: a compacted topic keyed by
product id, its message timestamps as event time, tombstones removing products."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from bytewax.testing import run_main
from kafka import KafkaProducer

from nudge.core import config as config_mod
from nudge.core.timefmt import parse_iso
from nudge.flows.dataflow import build_flow
from nudge.sources.files import JsonlSource
from tests.broker import Broker
from tests.events import T0, identify, view
from tests.flowtools import write_config

pytestmark = pytest.mark.broker


def _entry(title: str, price: float, **extra: object) -> bytes:
    return orjson.dumps({"title": title, "price": price, "availability": "in stock",
                         "link": "https://shop.example/p/x", "product_type": "apparel",
                         **extra})


def test_catalog_topic_in_event_time_with_tombstones(broker: Broker, tmp_path: Path) -> None:
    topic = broker.create_topic("catalog-products", partitions=2)
    t0 = parse_iso(T0)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    for key, value, minutes in (
        (b"sku-1", _entry("Linen Shirt", 49.0), -60),
        (b"sku-2", _entry("Leather Belt", 19.0), -60),
        (b"sku-2", None, 30),  # removed before the email is due (tombstone)
        (b"sku-1", _entry("Linen Shirt (new season)", 59.0), 500),  # after it is due
        (b"sku-3", b"{not json", 0),
    ):
        producer.send(topic, key=key, value=value, timestamp_ms=t0 + int(minutes * 60_000))
    producer.flush(30)
    producer.close()

    events = tmp_path / "events.jsonl"
    lines = [identify("vic", 0, email="vic@example.com", first_name="Vic"),
             view("vic", 1, "sku-2"), view("vic", 2, "sku-1"), view("vic", 3, "sku-1"),
             view("vic", 600, "sku-9")]  # event time moves past the 2 h stage
    events.write_bytes(b"\n".join(lines) + b"\n")
    conf = write_config(tmp_path / "nudge.toml", tmp_path / "out",
                        kafka={"brokers": [broker.bootstrap], "tail": False},
                        catalog={"topic": topic},
                        **{"triggers.browse_abandonment": {"enabled": True}})
    cfg = config_mod.load(str(conf))
    run_main(build_flow(cfg, source=JsonlSource([events], 100)),
             epoch_interval=timedelta(milliseconds=50))

    [mail] = sorted((tmp_path / "out" / "outbox").glob("*browse_abandonment*.eml"))
    body = mail.read_text()
    assert re.search(r"^Subject: Vic, still looking at Linen Shirt\?$", body, re.M)
    assert "new season" not in body and "Leather Belt" not in body
    dead = [orjson.loads(x) for x in (tmp_path / "out" / "dead-letters.jsonl").read_bytes()
            .splitlines()]
    assert [(d["stage"], d["reason"]) for d in dead] == [("catalog", "invalid_json")]
