"""The chaos command's CI variant (the full run is `make chaos`: 200k events, 20 kills).

SIGKILL `nudge run` (Kafka input, the demo's journeys, the ESP transport, recovery on)
at random points, resume each time, and compare with an uninterrupted run: the same
emails byte for byte, none lost, none delivered twice, the same decision log and dead
letters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import chaos

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_killed_at_random_points_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    report = chaos(events=20_000, customers=2_000, kills=5, partitions=3, seed=7,
                   workdir=tmp_path, log=lambda _: None)
    print(report.format())
    assert report.kills >= 4, report.format()  # a run may end before its last kill point
    assert report.reference_emails > 1000
    assert report.lost == 0 and report.extra == 0 and report.changed == 0, report.format()
    assert report.emails == report.reference_emails
    assert report.decisions_equal and report.dead_letters_equal, report.format()
    assert report.dead_letters > 0  # the sample's malformed records went through as well
