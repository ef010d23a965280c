"""Shared fixtures: the session's Kafka-protocol broker (tests marked `broker`)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.broker import Broker, free_port
from tests.flowtools import TEST_KEY, TEST_KEY_ENV

# The key of every config tests/flowtools.py writes; `nudge` subprocesses inherit it.
os.environ.setdefault(TEST_KEY_ENV, TEST_KEY)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(free_port())
    b.start(tmp_path_factory.mktemp("tansu"))
    try:
        yield b
    finally:
        b.stop()
