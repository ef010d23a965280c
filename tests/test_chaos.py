"""The chaos command's CI variant (the full run is `make chaos`: 200k events, 20 kills per
guarantee).

SIGKILL `nudge run` (Kafka input, the demo's journeys, the ESP transport, recovery on) at
random points, resume each time, and compare with an uninterrupted run, under both delivery
guarantees, against an ESP that delivers every copy it is sent (no Idempotency-Key
de-duplication): at least once loses nothing; at most once delivers nothing twice and
reports every email it did not deliver as a dead letter `in_doubt`. Both: the same emails
byte for byte, the same decision log and dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import chaos

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_killed_at_random_points_under_both_guarantees(tmp_path: Path) -> None:
    least, most = chaos(events=20_000, customers=2_000, kills=5, partitions=3, seed=7,
                        workdir=tmp_path, log=lambda _: None)
    for report in (least, most):
        print(report.format())
        assert report.kills >= 4, report.format()  # a run may end before its last kill point
        assert report.reference_emails > 1000
        assert report.extra == 0 and report.changed == 0, report.format()
        assert report.decisions_equal and report.dead_letters_equal, report.format()
        assert report.dead_letters > 0  # the sample's malformed records went through as well
    assert least.guarantee == "at_least_once" and most.guarantee == "at_most_once"
    # at least once: every email delivered; a kill may have cost a copy (counted, not lost)
    assert least.lost == 0 and least.emails == least.reference_emails, least.format()
    assert least.in_doubt == 0
    # at most once: no email delivered twice, every one not delivered reported in_doubt
    assert most.resent_copies == 0, most.format()
    assert most.lost_unreported == 0 and most.lost <= most.in_doubt, most.format()
    assert most.emails + most.lost == most.reference_emails
    assert least.ok and most.ok
