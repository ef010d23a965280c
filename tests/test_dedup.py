"""MessageDedup against the plain definition: a repeat within the window of event time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nudge.state.dedup import MessageDedup, dedup_key


@settings(max_examples=300, deadline=None)
@given(window=st.integers(1, 50),
       steps=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 300),
                                st.booleans()), max_size=80),
       ordered=st.booleans())
def test_same_answers_as_the_definition(window: int, steps: list[tuple[str, int, bool]],
                                        ordered: bool) -> None:
    if ordered:  # as a shard asks: in event-time order
        steps = sorted(steps, key=lambda s: s[1])
    dedup = MessageDedup(window)
    kept: list[tuple[str, int]] = []  # every non-duplicate, never forgotten
    watermark = 0
    for mid, ts, expire in steps:
        if ts < watermark:
            continue  # the watermark promises nothing earlier arrives
        expected = any(m == mid and abs(ts - t) <= window for m, t in kept)
        assert dedup.is_duplicate(dedup_key("c", mid), ts) == expected, (mid, ts, kept)
        if not expected:
            kept.append((mid, ts))
        if expire:
            watermark = ts
            dedup.expire(watermark)
    restored = MessageDedup(window, resume=dedup.snapshot())
    for mid in "abcd":
        key = dedup_key("c", mid)
        assert restored.is_duplicate(key, watermark) == dedup.is_duplicate(key, watermark)
