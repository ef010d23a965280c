"""Event time: integers of milliseconds since the Unix epoch, UTC.

Integers keep records compact and comparisons cheap on the hot path; conversion to and from
ISO-8601 happens only at the edges (parse, decision log, templates).

>>> to_iso(parse_duration("1h"))
'1970-01-01T01:00:00Z'
>>> parse_iso("2026-10-01T12:00:00.250+02:00")
1790848800250
>>> parse_duration("1d12h")
129600000
>>> [format_duration(parse_duration(x)) for x in ("0m", "90s", "1h", "36h", "7d", "14d")]
['0m', '90s', '1h', '36h', '7d', '14d']
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

# Final literals: mypyc (nudge/tools/native.py) inlines them into the compiled modules.
MS: Final = 1
SECOND: Final = 1_000
MINUTE: Final = 60_000
HOUR: Final = 3_600_000
DAY: Final = 86_400_000

_UNITS = {"ms": MS, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": 7 * DAY}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> int:
    """'90s', '30m', '1h', '1d12h' -> milliseconds. Raises ValueError on anything else."""
    text = text.strip()
    pos, total = 0, 0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30m, 1h, 24h, 7d)")
    return total


def format_duration(ms: int) -> str:
    """ms -> the largest unit that divides it: '2h', '7d', '90s' (the inverse of parsing)."""
    if ms == 0:
        return "0m"
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def least_watermark(inputs: int, ended: int, open_marks: list[int]) -> int | None:
    """The watermark over several inputs (partitions into a shard, shards into decide): the
    least watermark of the inputs still open, None until each of them has reported one.
    `inputs` counts them all, `ended` those that have finished.

    >>> least_watermark(3, 1, [50, 20])
    20
    >>> least_watermark(3, 0, [50, 20]) is None  # the third has not reported yet
    True
    """
    if not open_marks or ended + len(open_marks) < inputs:
        return None
    return min(open_marks)


def parse_iso(text: str) -> int:
    """ISO-8601 with an explicit offset -> ms. Naive times are refused: they are ambiguous."""
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone offset")
    return round(parsed.timestamp() * 1000)


def to_iso(ms: int) -> str:
    """ms -> '2026-10-01T12:00:00Z' (milliseconds shown only when not zero)."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
