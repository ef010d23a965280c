"""Shared fixtures: the session's Kafka-protocol broker (tests marked `broker`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.broker import Broker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(free_port())
    b.start(tmp_path_factory.mktemp("tansu"))
    try:
        yield b
    finally:
        b.stop()
