"""Step ids are stored schema: Bytewax recovery keys each step's state by its full id, so a
renamed (or newly nested) stateful step silently starts empty after an upgrade. This pins
every stateful step of the flow with everything on; a new stateful step is added here on
purpose, never renamed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nudge.app.runflow import DEMO_CONFIG
from nudge.core import config as config_mod
from nudge.flows.dataflow import build_flow
from nudge.sources.files import JsonlSource

# Core steps that keep state: sources (their read positions), stateful logic, and sinks
# (file sinks keep their length; the delivery sink the emails in flight).
STATEFUL = {"input", "stateful_batch", "output"}

PINNED = [
    "nudge.sources",
    "nudge.parse",
    "nudge.catalog_sources",
    "nudge.catalog_parse",
    "nudge.links",
    "nudge.identity",
    "nudge.customers",
    "nudge.addresses",
    "nudge.decide",
    "nudge.decision_log",
    "nudge.segment_out",
    "nudge.outcome_out",
    "nudge.profiles",
    "nudge.deliver",
    "nudge.dead_letter_out",
]


def _leaves(steps: list[Any]) -> Iterator[Any]:
    for step in steps:
        if step.substeps:
            yield from _leaves(step.substeps)
        else:
            yield step


def _stateful_ids(config: config_mod.Config, tmp_path: Path) -> list[str]:
    events = tmp_path / "events.jsonl"
    events.touch()
    flow = build_flow(config, source=JsonlSource([str(events)], 10))
    return [s.step_id for s in _leaves(flow.substeps) if type(s).__name__ in STATEFUL]


def test_the_stateful_step_ids_of_the_full_flow_are_pinned(tmp_path: Path) -> None:
    assert _stateful_ids(config_mod.load(DEMO_CONFIG), tmp_path) == PINNED


def test_outputs_to_kafka_keep_the_same_step_ids(tmp_path: Path) -> None:
    demo = config_mod.load(DEMO_CONFIG)
    kafka = dataclasses.replace(demo, outputs=dataclasses.replace(
        demo.outputs, decisions="kafka", dead_letters="kafka", segments="kafka",
        outcomes="kafka"))
    assert _stateful_ids(kafka, tmp_path) == PINNED


def test_a_dry_run_drops_only_the_delivery_step(tmp_path: Path) -> None:
    demo = config_mod.load(DEMO_CONFIG)
    dry = dataclasses.replace(demo, delivery=dataclasses.replace(demo.delivery,
                                                                 transport="none"))
    assert _stateful_ids(dry, tmp_path) == [s for s in PINNED if s != "nudge.deliver"]

