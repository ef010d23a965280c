"""Send policy at a stage's due time: consent, address, quiet hours, frequency cap.

Pure functions of the customer record and event time; the order of checks is the order
of the README ("Cart abandonment"): consent first, then an address, then quiet hours,
then the cap. A capped stage is suppressed, not deferred.

>>> from nudge.core.config import QuietHoursConfig
>>> from nudge.core.timefmt import parse_iso
>>> qh = QuietHoursConfig(enabled=True, start=21 * 60, end=8 * 60)
>>> end = quiet_until(parse_iso("2026-10-05T22:30:00+00:00"), "UTC", qh)
>>> end == parse_iso("2026-10-06T08:00:00Z")
True
>>> quiet_until(parse_iso("2026-10-05T12:00:00Z"), "UTC", qh) is None
True
>>> quiet_until(parse_iso("2026-10-05T06:00:00Z"), "Europe/Berlin", qh) is None  # 08:00 local
True
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from nudge.core.address import canonical
from nudge.core.config import CapsConfig, QuietHoursConfig
from nudge.state.customer import Customer

NO_CONSENT: Final = "no_consent"
NO_ADDRESS: Final = "no_address"
QUIET_HOURS: Final = "quiet_hours"
FREQUENCY_CAP: Final = "frequency_cap"


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def quiet_until(ts: int, timezone: str, quiet: QuietHoursConfig) -> int | None:
    """If `ts` falls in quiet hours in `timezone`, the event time they end; else None."""
    local = datetime.fromtimestamp(ts / 1000, tz=_zone(timezone))
    minute = local.hour * 60 + local.minute
    start, end = quiet.start, quiet.end
    if start < end:
        inside = start <= minute < end
        end_day = local.date()
    else:  # the window wraps midnight, e.g. 21:00-08:00
        inside = minute >= start or minute < end
        end_day = local.date() + timedelta(days=1) if minute >= start else local.date()
    if not inside:
        return None
    end_local = datetime(end_day.year, end_day.month, end_day.day, end // 60, end % 60,
                         tzinfo=local.tzinfo)
    return max(int(end_local.timestamp() * 1000), ts + 1)


def consent_block(c: Customer, trigger: str = "") -> str | None:
    """Why no marketing email of journey `trigger` may go to this customer now, or None.
    Opt-in is required, and no `Unsubscribed` scoped to the journey may stand."""
    if c.consent is not True or (c.unsubs and trigger in c.unsubs):
        return NO_CONSENT
    if not c.email or canonical(c.email) is None:
        return NO_ADDRESS  # the second: parse accepts only such addresses; never "sent"
    return None


def capped(c: Customer, ts: int, caps: CapsConfig) -> bool:
    """True if `caps.max_emails` were already sent in the rolling window ending at `ts`."""
    lo = ts - caps.window
    recent = [t for t in c.sends if t > lo]
    if len(recent) != len(c.sends):
        c.sends = recent  # the window moved past them: forget them for good
    return len(recent) >= caps.max_emails
