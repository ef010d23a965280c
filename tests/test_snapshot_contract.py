"""Every stateful step's snapshot carries a format number; a restore refuses another one with
a SnapshotError (a NudgeError) naming the step and the formats. A snapshot without the number
is format 1, the layout before it was stamped, so older recovery stores still resume."""

from __future__ import annotations

from typing import Any

import pytest

from nudge.core.config import Config, EventsConfig
from nudge.core.errors import NudgeError
from nudge.flows.decide import Decider
from nudge.flows.parse import ParseLogic
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
