"""Cart-abandonment semantics, as the README states them, through parse -> shards -> decide."""

from __future__ import annotations

from nudge.core.config import CapsConfig, Config, EventsConfig, QuietHoursConfig
from nudge.core.timefmt import HOUR, MINUTE, parse_iso
from tests.events import T0, add, identify, order, remove, track, view
from tests.harness import Pipeline, cart_stages

BASE = parse_iso(T0)


def run(records: list[bytes], config: Config | None = None) -> list[tuple]:
    p = Pipeline(config)
    p.feed(records)
    p.end()
    return [(d.customer_id, d.episode, d.stage, (d.due - BASE) // MINUTE, d.outcome, d.reason)
            for d in p.decisions]


def test_abandoned_cart_gets_one_email_an_hour_after_the_last_activity() -> None:
    assert run([identify("u", 0), add("u", 1), add("u", 10, pid="sku-2"), view("z", 500)]) == [
        ("u", 1, 1, 70, "sent", None)]


def test_order_before_due_cancels() -> None:
    assert run([identify("u", 0), add("u", 1), order("u", 30), view("z", 500)]) == []


def test_order_exactly_at_due_cancels_and_after_due_does_not() -> None:
    assert run([identify("u", 0), add("u", 0), order("u", 60), view("z", 500)]) == []
    assert run([identify("u", 0), add("u", 0), order("u", 61), view("z", 500)]) == [
        ("u", 1, 1, 60, "sent", None)]


def test_removing_the_last_item_closes_without_email() -> None:
    assert run([identify("u", 0), add("u", 0), remove("u", 5), view("z", 500)]) == []


def test_removing_one_of_two_items_moves_the_last_activity() -> None:
    records = [identify("u", 0), add("u", 0), add("u", 1, pid="sku-2"),
               remove("u", 30, pid="sku-2"), view("z", 500)]
    assert run(records) == [("u", 1, 1, 90, "sent", None)]


def test_stage_is_not_reached_before_the_watermark_passes_it() -> None:
    # Allowed lateness 1m: an event at +61m moves the watermark to +60m, not past it.
    p = Pipeline()
    p.feed([identify("u", 0), add("u", 0), view("z", 61)])
    assert p.decisions == []
    p.feed([view("z", 61.1)])
    assert [d.outcome for d in p.decisions] == ["sent"]


def test_end_of_replay_fires_stages_due_by_the_last_event_time_only() -> None:
    cfg = cart_stages(HOUR, 24 * HOUR, shards=4)
    # the last event is exactly at the first stage's due time: it fires, the second does not
    assert run([identify("u", 0), add("u", 0), view("z", 60)], cfg) == [
        ("u", 1, 1, 60, "sent", None)]


def test_multi_stage_each_stage_after_the_last_activity() -> None:
    cfg = cart_stages(HOUR, 24 * HOUR, shards=4,
                      caps=CapsConfig(max_emails=3, window=24 * HOUR))
    records = [identify("u", 0), add("u", 0), add("u", 90, pid="sku-2"), view("z", 3000)]
    # stage 1 due at +60 (before the second add), stage 2 at +90m+24h
    assert run(records, cfg) == [("u", 1, 1, 60, "sent", None),
                                 ("u", 1, 2, 90 + 24 * 60, "sent", None)]


def test_frequency_cap_suppresses_within_the_window_and_not_after() -> None:
    records = [identify("u", 0), add("u", 0), order("u", 120), add("u", 180),
               order("u", 300), add("u", 24 * 60 + 10), view("z", 5000)]
    assert run(records) == [("u", 1, 1, 60, "sent", None),
                            ("u", 2, 1, 240, "suppressed", "frequency_cap"),
                            ("u", 3, 1, 24 * 60 + 70, "sent", None)]


def test_the_cap_is_not_consumed_by_suppressed_stages() -> None:
    cfg = Config(shards=4, caps=CapsConfig(max_emails=2, window=24 * HOUR))
    records = [identify("u", 0), add("u", 0), order("u", 120), add("u", 180), order("u", 300),
               add("u", 400), view("z", 5000)]
    outcomes = [(r[1], r[4], r[5]) for r in run(records, cfg)]
    assert outcomes == [(1, "sent", None), (2, "sent", None), (3, "suppressed", "frequency_cap")]


def test_no_consent_and_no_address_are_suppressed() -> None:
    assert run([identify("u", 0, consent=False), add("u", 0), view("z", 500)]) == [
        ("u", 1, 1, 60, "suppressed", "no_consent")]
    assert run([identify("u", 0, consent=None), add("u", 0), view("z", 500)]) == [
        ("u", 1, 1, 60, "suppressed", "no_consent")]
    assert run([identify("u", 0, email=None), add("u", 0), view("z", 500)]) == [
        ("u", 1, 1, 60, "suppressed", "no_address")]


def test_unsubscribe_takes_effect_for_sends_after_it() -> None:
    before = [identify("u", 0), add("u", 0), track("Unsubscribed", "u", 59), view("z", 500)]
    assert run(before) == [("u", 1, 1, 60, "suppressed", "no_consent")]
    after = [identify("u", 0), add("u", 0), track("Unsubscribed", "u", 61), view("z", 500)]
    assert run(after) == [("u", 1, 1, 60, "sent", None)]


def test_quiet_hours_defer_to_their_end_in_the_customers_timezone() -> None:
    cfg = Config(shards=4, quiet_hours=QuietHoursConfig(enabled=True, start=21 * 60, end=8 * 60))
    # T0 is 10:00Z; an add at 11:30Z (13:30 Berlin? no: 20:30 Tokyo) due 12:30Z = 21:30 Tokyo
    records = [identify("u", 0, tz="Asia/Tokyo"), add("u", 90), view("z", 5000)]
    # quiet hours end 08:00 Tokyo = 23:00Z = T0 + 13h
    assert run(records, cfg) == [("u", 1, 1, 13 * 60, "sent", None)]


def test_an_order_during_the_deferral_cancels_the_deferred_stage() -> None:
    cfg = Config(shards=4, quiet_hours=QuietHoursConfig(enabled=True, start=21 * 60, end=8 * 60))
    records = [identify("u", 0, tz="Asia/Tokyo"), add("u", 90), order("u", 12 * 60),
               view("z", 5000)]
    assert run(records, cfg) == []


def test_quiet_hours_suppress_mode() -> None:
    cfg = Config(shards=4, quiet_hours=QuietHoursConfig(enabled=True, start=21 * 60,
                                                        end=8 * 60, action="suppress"))
    records = [identify("u", 0, tz="Asia/Tokyo"), add("u", 90), view("z", 5000)]
    assert run(records, cfg) == [("u", 1, 1, 150, "suppressed", "quiet_hours")]


def test_a_completed_episode_lets_a_later_add_open_the_next_one() -> None:
    records = [identify("u", 0), add("u", 0), add("u", 30 * 60), view("z", 5000)]
    assert run(records) == [("u", 1, 1, 60, "sent", None), ("u", 2, 1, 30 * 60 + 60, "sent", None)]


def test_duplicate_message_ids_are_dropped() -> None:
    p = Pipeline()
    dup = add("u", 0, message_id="same")
    p.feed([identify("u", 0), dup, dup, remove("u", 5), dup, view("z", 500)])
    p.end()
    # the repeated add is dropped, so the single remove empties the cart: no email
    assert p.decisions == []
    assert sum(s.stats["duplicates"] for s in p.shards) == 2


def test_duplicates_outside_the_window_count_again() -> None:
    cfg = Config(shards=4, events=EventsConfig(dedup_window=10 * MINUTE))
    p = Pipeline(cfg)
    p.feed([identify("u", 0), add("u", 0, message_id="a"), view("z", 30),
            track("Product Added", "u", 31, {"product_id": "sku-9"}, message_id="a")])
    assert sum(s.stats["duplicates"] for s in p.shards) == 0


def test_watermark_is_the_minimum_over_partitions() -> None:
    p = Pipeline(n_parts=2)
    p.feed([identify("u", 0), add("u", 0), view("z", 500)], part=0)
    assert p.decisions == []  # partition 1 has not spoken: no watermark yet
    p.feed([view("y", 30)], part=1)
    assert p.decisions == []  # partition 1 is at +29m
    p.feed([view("y", 62)], part=1)
    assert [d.outcome for d in p.decisions] == ["sent"]


def test_late_event_beyond_lateness_is_applied_at_the_watermark() -> None:
    p = Pipeline()
    # the order claims +30m but arrives after events at +120m: it counts at +119m,
    # after the stage due at +60m, which was reached already
    p.feed([identify("u", 0), add("u", 0), view("z", 120), order("u", 30), view("z", 500)])
    p.end()
    assert [(d.stage, d.outcome) for d in p.decisions] == [(1, "sent")]
