"""The snapshot contract of every Bytewax stateful step: a dict with a leading format number.

A step's `snapshot()` returns `stamp(FORMAT, {...})`; its restore calls
`check(step, snap, FORMAT)` first, which refuses any other format with a SnapshotError naming
the step and both formats (a recovery store written by another version of Nudge). A snapshot
without the number is format 1: the layout of the steps that carried none yet.
"""

from __future__ import annotations

from typing import Any

from nudge.core.errors import SnapshotError

FORMAT_KEY = "format"


def stamp(fmt: int, state: dict[str, Any]) -> dict[str, Any]:
    """`state` with its format number."""
    return {FORMAT_KEY: fmt, **state}


def check(step: str, snap: Any, fmt: int) -> dict[str, Any]:
    """`snap` if it is of format `fmt`, else SnapshotError naming `step`."""
    found = snap.get(FORMAT_KEY, 1) if isinstance(snap, dict) else type(snap).__name__
    if found != fmt:
        raise SnapshotError(f"the recovery state of step {step!r}", found, fmt)
    return snap
