"""A shortened fuzz run in the suite; the full one is `make fuzz` (100k payloads)."""

from tests.fuzz import KINDS, run


def test_malformed_payloads_never_crash_and_are_all_dead_lettered() -> None:
    r = run(5000, seed=7)
    assert r["crashes"] == []
    assert r["accepted"] == []
    assert r["dead"] == 5000
    assert set(r["kinds"]) == set(KINDS)
