"""The dead-letter line keeps the original bytes exactly, also when they are not UTF-8,
and lines written before `raw_b64` existed still read (marked inexact when they may be)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nudge.core.deadletter import DeadLetter
from nudge.core.events import Position


def round_trip(raw: bytes) -> tuple[DeadLetter, bool, dict]:
    letter = DeadLetter("parse", "invalid_utf8", "d", Position("in/events.jsonl", -1, 7), raw)
    line = orjson.dumps(letter.to_json())
    obj = orjson.loads(line)
    back, exact = DeadLetter.from_json(obj)
    return back, exact, obj


@given(st.binary(max_size=300))
def test_any_bytes_round_trip_exactly(raw: bytes) -> None:
    back, exact, _ = round_trip(raw)
    assert exact and back.raw == raw
    assert back.position == Position("in/events.jsonl", -1, 7)


def test_backslashreplace_alone_is_ambiguous_so_raw_b64_carries_the_bytes() -> None:
    a, b = b'{"n": "\xff"}', b'{"n": "\\xff"}'
    # the old format's only field: the same text for different bytes
    assert a.decode("utf-8", "backslashreplace") == b.decode("utf-8", "backslashreplace")
    back_a, _, obj_a = round_trip(a)
    back_b, _, obj_b = round_trip(b)
    assert (back_a.raw, back_b.raw) == (a, b)
    assert obj_a["raw_b64"] is not None and obj_b["raw_b64"] is None
    assert obj_a["raw"] == obj_b["raw"] == '{"n": "\\xff"}'  # still readable text


def test_old_lines_without_raw_b64_still_read() -> None:
    old = {"stage": "parse", "reason": "invalid_json", "detail": "x", "source": "e.jsonl",
           "partition": -1, "offset": 3, "raw": '{"a": 1'}
    letter, exact = DeadLetter.from_json(old)
    assert exact and letter.raw == b'{"a": 1' and letter.position == Position("e.jsonl", -1, 3)
    letter, exact = DeadLetter.from_json(dict(old, raw='{"a": "\\xff"}'))
    assert not exact  # could have been the byte 0xff: not provably the original
    render = {"stage": "render", "reason": "render_failed", "detail": "x", "source": None,
              "partition": None, "offset": None, "raw": "k"}
    assert DeadLetter.from_json(render)[0].position is None


def test_a_line_that_is_not_a_dead_letter_names_the_field() -> None:
    for obj, field in [([], "object"), ({"stage": "parse", "reason": 1, "raw": ""}, "reason"),
                       ({"stage": "parse", "reason": "r", "raw": "", "raw_b64": "%%"},
                        "raw_b64"),
                       ({"stage": "parse", "reason": "r", "raw": "", "source": "f",
                         "offset": "3"}, "offset")]:
        with pytest.raises(ValueError, match=field):
            DeadLetter.from_json(obj)
