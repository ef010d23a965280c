"""What both parsing paths share, so they agree: the limits, blocked identifiers, timestamps.

Limits (from the config), the outcomes that are not an Event (Ignored, Refused), the check
for blocked identifier values, and the timestamp and timezone readers. The paths themselves
are nudge/flows/fastpath.py and nudge/flows/fullpath.py; nudge/flows/contract.py joins them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from nudge.core.config import EventsConfig, IdentityConfig
from nudge.core.errors import InputError
from nudge.core.events import Event, Kind
from nudge.core.ids import ANON_PREFIX, USER_PREFIX
from nudge.flows.wire import Aware

SINGLE_PRODUCT = frozenset((Kind.PRODUCT_VIEWED, Kind.PRODUCT_ADDED, Kind.PRODUCT_REMOVED))

# "" and every character str.strip() removes: a blank or padded id is checked in full
_SPACES: Final = frozenset(["", *(c for c in map(chr, range(0x3001)) if c.isspace())])

# Events before this are certainly bogus (an unset clock, a seconds/ms mix-up).
MIN_TIMESTAMP: Final = 946_684_800_000  # 2000-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload: int
    min_ts: int
    max_ts: int
    ignore: frozenset[str]
    blocked: frozenset[str] = frozenset(IdentityConfig().blocked_ids)
    # first characters a blocked value (any case, or blank) can start with: most ids are
    # cleared by one set lookup
    blocked_first: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, events: EventsConfig, *, now_ms: int,
                    identity: IdentityConfig | None = None) -> Limits:
        """`now_ms` bounds timestamps from the future: the one wall-clock read of parse.

        It only rejects timestamps no producer can honestly send (beyond now + skew); it
        never moves event time, so replays of past data parse identically on any day.
        """
        blocked = frozenset(b.strip().lower() for b in (identity or IdentityConfig()).blocked_ids)
        first = {c for b in blocked for c in (b[:1].lower(), b[:1].upper())}
        first |= _SPACES
        return cls(events.max_payload_bytes, MIN_TIMESTAMP, now_ms + events.max_future_skew,
                   frozenset(events.ignore), blocked, frozenset(first))


class Ignored(Exception):
    """A well-formed call Nudge deliberately does not act on: a `group`, an event of
    COUNTED_ONLY, or a name the config lists under `events.ignore`. Counted by name."""


class Refused(Exception):
    """A valid event one of whose identifiers is refused (a blocked value): the event is
    kept under its other identifier, and the refusal is a dead letter (stage "identity")."""

    def __init__(self, event: Event, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason
        self.detail = detail


RESERVED: Final = (ANON_PREFIX, USER_PREFIX)
_BLOCKED_LEN: Final = 16


def blocked(identifier: str, limits: Limits) -> bool:
    """A value no identifier may have (`identity.blocked_ids`, any case, blank too)."""
    if len(identifier) > _BLOCKED_LEN or (
            limits.blocked_first and identifier[:1] not in limits.blocked_first):
        return False
    bare = identifier.strip()
    return not bare or bare.lower() in limits.blocked


def fail(reason: str, detail: str) -> InputError:
    return InputError(reason, detail)


# -- timestamps (shared by both paths, so they agree to the millisecond) ----------------
# RFC 3339 first (msgspec's C parser, the fast path's): then the wider ISO-8601 forms
# datetime.fromisoformat reads (e.g. '2026-10-05T10:00Z'). Both paths try them in this order.

def to_ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def timestamp_ms(text: str) -> int:
    """ISO-8601 with an offset -> ms. Raises InputError(bad_timestamp)."""
    try:
        return to_ms(msgspec.convert(text, Aware))
    except msgspec.ValidationError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise fail("bad_timestamp", f"timestamp {text!r:.60} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise fail("bad_timestamp", f"timestamp {text!r:.60} has no timezone offset")
    try:
        return to_ms(parsed)
    except (OverflowError, OSError, ValueError):
        raise fail("bad_timestamp", f"timestamp {text!r:.60} is out of range") from None


def in_range(ts: int, text: str, limits: Limits) -> int:
    if ts < limits.min_ts or ts > limits.max_ts:
        raise fail("timestamp_out_of_range",
                    f"timestamp {text!r:.60} is before 2000 or too far in the future")
    return ts



@lru_cache(maxsize=1024)
def valid_timezone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True

