"""Broker trouble, as a user meets it: the broker unreachable at start, or gone for a while
in the middle of a live run (README, "Reliability").

Mid-run outages go through a loopback TCP proxy (tests/netfault.py) in front of a tansu
broker of this module's own: tansu keeps its data in memory, so restarting it would lose
the topic; cutting the proxy keeps the broker and its data and takes away the network.
The broker advertises the proxy's port, so every client connection goes through it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from nudge.core import config as config_mod
from tests.broker import Broker, free_port, tansu_binary
from tests.events import add, identify, view
from tests.flowtools import write_config
from tests.netfault import Proxy

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.broker

# Customer ids of this module's events: no log line may carry one (no personal data in logs).
CUSTOMER = "shopper-7f3a"


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def wait_for(cond: Callable[[], object], timeout: float, step: float = 0.25) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    return cond()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Proxy]]:
    """A tansu broker listening on its own port and advertising the proxy's."""
    real = free_port()
    with Proxy(real, lifetime=900) as proxy:
        log_path = tmp_path_factory.mktemp("tansu-proxied") / "tansu.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(tansu_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{real}",
                 "--advertised-listener-url", f"tcp://{proxy.address}",
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT)
        broker = Broker(proxy.port, proc=proc, log_path=log_path)
        try:
            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"tansu exited: {log_path.read_text()[-2000:]}")
                try:
                    md = AdminClient({"bootstrap.servers": proxy.address}).list_topics(timeout=1)
                    return bool(md.brokers)
                except Exception:
                    return False
            assert wait_for(up, 30), "tansu did not answer through the proxy within 30 s"
            yield broker, proxy
        finally:
            broker.stop()


def good_events(prefix: str, n: int) -> list[tuple[bytes | None, bytes]]:
    """A few shoppers browsing and adding to carts, keyed by customer id, timed now."""
    from nudge.core.timefmt import to_iso

    base = to_iso(int(time.time() * 1000))
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        user = f"{CUSTOMER}-{prefix}-{i}"
        out += [(user.encode(), identify(user, 0, base=base)),
                (user.encode(), view(user, 0.01, base=base)),
                (user.encode(), add(user, 0.02, base=base))]
    return out


def dead_letter_raws(path: Path) -> list[str]:
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError, KeyError):  # a line being written
            out.append(orjson.loads(line)["raw"])
    return out


@pytest.mark.slow
def test_broker_unreachable_at_start_is_a_clear_error_after_retries(tmp_path: Path) -> None:
    """Nothing listens on kafka.brokers: warnings with growing delays, then one line naming
    the brokers, the topic and the keys to check; exit code 2; no traceback, no panic, no
    librdkafka line per reconnect."""
    closed = f"127.0.0.1:{free_port()}"
    conf = write_config(tmp_path / "nudge.toml", tmp_path,
                        kafka={"brokers": [closed], "topic": "shop-nowhere"})
    result = subprocess.run(
        [sys.executable, "-m", "nudge", "run", "--config", str(conf), "--bounded"],
        cwd=ROOT, text=True, capture_output=True, timeout=150, check=False, env=env())
    err = result.stderr
    assert result.returncode == 2, err[-3000:]  # within the timeout: it gave up by itself

    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith(f"nudge: kafka topic 'shop-nowhere' on brokers {closed}: "), last
    assert "(kafka.brokers)" in last and "(kafka.topic)" in last, last

    retries = [line for line in lines if "retrying in" in line]
    delays = [float(m) for m in re.findall(r"retrying in ([0-9.]+) s", err)]
    assert len(delays) >= 3, err[-3000:]
    assert delays == sorted(delays) and len(set(delays)) == len(delays), delays
    for line in retries:
        assert " WARNING nudge.kafka.source: " in line and closed in line
        assert "'shop-nowhere'" in line

    assert "Traceback" not in err and "panicked" not in err, err[-3000:]
    assert "|FAIL|" not in err, "librdkafka's per-reconnect lines reached the user"
    logged = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
    assert all(logged.match(line) for line in lines[:-1]), err[-3000:]  # log lines only
    assert result.stdout == ""


def test_broker_gone_mid_run_warns_retries_and_resumes(proxied: tuple[Broker, Proxy],
                                                       tmp_path: Path) -> None:
    """Live run; the network to the broker is cut for 7 s: the process stays up, warns
    naming the topic and partition and that it retries, then reads again by itself."""
    broker, proxy = proxied
    topic = broker.create_topic("shop-outage", partitions=1)
    bad_before, bad_after = b"{not json: before the outage", b"{not json: after the outage"
    broker.produce(topic, [*good_events("a", 10), (b"x", bad_before), *good_events("b", 5)])

    dead = tmp_path / "dead-letters.jsonl"
    conf = write_config(tmp_path / "nudge.toml", tmp_path,
                        kafka={"brokers": [proxy.address], "topic": topic, "batch_size": 100},
                        events={"allowed_lateness": "1s"})
    log_path = tmp_path / "nudge.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nudge", "run", "--config", str(conf)],
                                cwd=ROOT, env=env(), stdout=out, stderr=subprocess.STDOUT)

    def log() -> str:
        return log_path.read_text(errors="replace")

    try:
        assert wait_for(lambda: bad_before.decode() in dead_letter_raws(dead)
                        or proc.poll() is not None, 60)
        assert proc.poll() is None, log()[-3000:]
        assert bad_before.decode() in dead_letter_raws(dead), log()[-3000:]

        proxy.cut()
        cut_at = time.monotonic()
        warning = re.compile(r" WARNING nudge\.kafka\.source: Kafka 127\.0\.0\.1:\d+ topic "
                             rf"{topic} partition 0: .+; retrying")
        assert wait_for(lambda: warning.search(log()) or proc.poll() is not None, 60), \
            log()[-3000:]
        while time.monotonic() - cut_at < 7:  # the outage lasts; the process stays up
            assert proc.poll() is None, log()[-3000:]
            time.sleep(0.25)
        assert warning.search(log()), log()[-3000:]
        assert proxy.refused > 0  # it kept trying to reconnect during the cut
        proxy.restore()

        broker.produce(topic, [*good_events("c", 5), (b"x", bad_after)])
        assert wait_for(lambda: bad_after.decode() in dead_letter_raws(dead)
                        or proc.poll() is not None, 60), log()[-3000:]
        assert proc.poll() is None, log()[-3000:]
        assert bad_after.decode() in dead_letter_raws(dead)
        assert wait_for(lambda: re.search(rf"topic {topic} partition 0: reading again after "
                                          r"\d+ s", log()), 15), log()[-3000:]
        assert dead_letter_raws(dead).count(bad_before.decode()) == 1  # not read twice
        text = log()  # what the user saw while it ran (stopping it prints Bytewax's own)
    finally:
        proxy.restore()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
    assert "Traceback" not in text and "panicked" not in text, text[-3000:]
    assert "|FAIL|" not in text, "librdkafka's per-reconnect lines reached the user"
    assert CUSTOMER not in text, "a customer id in the log"


def test_no_heartbeats_during_an_outage_and_again_after_it(proxied: tuple[Broker, Proxy],
                                                           tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """The source itself: a caught-up live partition sends heartbeats; while the broker is
    away it sends none (it may not be caught up: event time must not run ahead of records
    it cannot see) and repeats its warning while the outage lasts; after it, it reads again
    and the heartbeats resume, with no new record on the topic (a quiet partition must not
    stall)."""
    from nudge.kafka.source import OUTAGE_LOG_EVERY_S, _KafkaPartition

    broker, proxy = proxied
    topic = broker.create_topic("shop-quiet", partitions=1)
    broker.produce(topic, good_events("q", 2))
    conf = write_config(tmp_path / "nudge.toml", tmp_path,
                        kafka={"brokers": [proxy.address], "topic": topic})
    cfg = config_mod.load(str(conf))
    skew = [0.0]  # the source's clock: real time, moved on by the test to repeat the warning
    part = _KafkaPartition(cfg.kafka, cfg.events, 0, 1, None, True,
                           lambda: time.time() + skew[0])
    caplog.set_level(logging.INFO, logger="nudge.kafka.source")
    records: list[tuple[int, bytes]] = []
    heartbeats: list[float] = []

    def step() -> None:
        for _, chunk in part.next_batch():
            records.extend(chunk.records)
            if chunk.heartbeat is not None:
                heartbeats.append(time.monotonic())
        time.sleep(0.02)

    def messages() -> str:
        return "\n".join(r.getMessage() for r in caplog.records)

    def run_until(cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not cond():
            step()
        return cond()

    try:
        assert run_until(lambda: len(records) == 6 and bool(heartbeats), 30), messages()
        proxy.cut()
        assert run_until(lambda: "; retrying" in messages(), 15), messages()
        outage_seen = time.monotonic()
        run_until(lambda: False, 2)
        assert not [t for t in heartbeats if t > outage_seen], "heartbeats during the outage"
        assert f"topic {topic} partition 0" in messages()
        assert "still failing" not in messages()  # not before OUTAGE_LOG_EVERY_S of its clock
        skew[0] += OUTAGE_LOG_EVERY_S + 1
        step()
        assert re.search(rf"topic {topic} partition 0: still failing after \d+ s", messages())
        assert not [t for t in heartbeats if t > outage_seen], "heartbeats during the outage"
        proxy.restore()
        restored = time.monotonic()
        assert run_until(lambda: any(t > restored for t in heartbeats), 30), messages()
        assert re.search(rf"topic {topic} partition 0: reading again after \d+ s", messages())
        assert len(records) == 6  # nothing read twice by the seek
    finally:
        proxy.restore()
        part.close()
    assert CUSTOMER not in messages()
