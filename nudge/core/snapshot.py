"""The snapshot contract of every Bytewax stateful step: a dict with a leading format number.

One form for every step and every part inside one:

- `snapshot()` returns plain data; a step's returns `stamp(FORMAT, {...})`, its format number
  first. The parts inside a step (a shard's de-duplication, the item model, the catalogue,
  the propensity model...) are versioned by the step's number, or carry one of their own.
- restore is the constructor: `Part(settings..., resume=snapshot)` builds the part as it was
  at the snapshot, `resume=None` builds it empty. Bytewax hands a step's builder (a
  StatefulBatchLogic's, a source's or sink's `build_part`) the resume state the same way, so
  nothing restores in place and nothing is built twice.
- the constructor calls `check(step, resume, FORMAT)` first, which returns the snapshot as a
  dict of this format, or raises a SnapshotError (a NudgeError) naming the step and both
  formats (a recovery store written by another version of Nudge).

A snapshot without the number is format 1: the layout of the steps that carried none yet
(a dict without the key, or a bare value such as a source's offset). A step whose layout
changed since passes `older={1: convert}`, which turns the old layout into the current one.

>>> check("parse", stamp(1, {"max_ts": 5}), 1)
{'format': 1, 'max_ts': 5}
>>> check("input", 42, 2, older={1: lambda offset: stamp(2, {"offset": offset})})
{'format': 2, 'offset': 42}
>>> check("input", stamp(3, {"offset": 42}), 2)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nudge.core.errors.SnapshotError: the recovery state of step 'input' is of format 3, ...
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nudge.core.errors import SnapshotError

FORMAT_KEY = "format"


def stamp(fmt: int, state: dict[str, Any]) -> dict[str, Any]:
    """`state` with its format number."""
    return {FORMAT_KEY: fmt, **state}


def format_of(snap: Any) -> int | str:
    """The format number of `snap`: 1 when it carries none (a dict without the key, or a bare
    value: the layouts before the contract); a dict's number of another type is named as is."""
    if isinstance(snap, dict):
        found = snap.get(FORMAT_KEY, 1)
        return found if type(found) is int else repr(found)
    return 1


def check(step: str, snap: Any, fmt: int,
          older: Mapping[int, Callable[[Any], dict[str, Any]]] | None = None) -> dict[str, Any]:
    """`snap` as a dict of format `fmt` (converted by `older[n]` from an older format n), else
    a SnapshotError naming `step`."""
    found = format_of(snap)
    if found == fmt and isinstance(snap, dict):
        return snap
    convert = older.get(found) if older is not None and isinstance(found, int) else None
    if convert is None:
        shown = found if isinstance(snap, dict) or found != fmt else type(snap).__name__
        raise SnapshotError(f"the recovery state of step {step!r}", shown, fmt)
    try:
        return convert(snap)
    except (TypeError, ValueError, KeyError, IndexError):  # not the layout its number says
        raise SnapshotError(f"the recovery state of step {step!r}",
                            f"{found} ({type(snap).__name__}, unreadable)", fmt) from None
