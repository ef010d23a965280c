"""`nudge deadletters replay` on file input: dead letters made by a real replay with a
too-small `events.max_payload_bytes`, the config fixed, the dead letters re-fed into replay
files, those replayed through the real dataflow; nothing is re-fed twice, records that
still fail are skipped with their reasons, and bytes that are not UTF-8 survive exactly."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson

from nudge.app.refeed import finish_interrupted, one_line, replay_dead_letters
from nudge.core.config import Config, DeadLetterReplayConfig, OutputsConfig
from nudge.core.deadletter import DeadLetter
from nudge.core.events import Position
from nudge.state.replayed import ReplayStore, letter_key
from tests.badinput import bad_records
from tests.events import add, identify, track, view
from tests.flowtools import write_config
from tests.test_cli_config import nudge

BIG = "N" * 400  # makes a record larger than the broken config's limit


def big_identify(user: str, minutes: float) -> bytes:
    doc = orjson.loads(identify(user, minutes))
    doc["traits"]["notes"] = BIG  # an unknown trait: ignored by the parser, but it is bytes
    return orjson.dumps(doc)


def big_view(user: str, minutes: float) -> bytes:
    return track("Product Viewed", user, minutes, {"product_id": "p2", "name": BIG})


def big_add(user: str, minutes: float) -> bytes:
    return track("Product Added", user, minutes,
                 {"product_id": "p2", "name": BIG, "price": 5.0})


def decisions(path: Path) -> list[dict]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


def test_file_round_trip_refeeds_once_and_the_dataflow_decides_on_them(tmp_path: Path) -> None:
    # Customers a and c are small; b (file 0) and d (file 1) send records over 400 bytes.
    part0 = [identify("a", 0), add("a", 1), big_identify("b", 2), big_add("b", 3),
             view("a", 200), big_view("b", 201)]
    not_utf8_big = b'{"type": "track", "note": "' + b"\xff" * 500 + b'"}'
    part1 = [big_identify("d", 0), track("Gift Card Redeemed", "c", 1), big_add("d", 4),
             b"{broken", b'{"type": "track", "event": "\xff\xfe"}', not_utf8_big,
             big_view("d", 300)]
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = [inputs / "events-0.jsonl", inputs / "events-1.jsonl"]
    for f, lines in zip(files, (part0, part1), strict=True):
        f.write_bytes(b"\n".join(lines) + b"\n")
    state = {"dead_letter_replay": {"state_dir": str(tmp_path / "replayed"),
                                    "out_dir": str(tmp_path / "replay")}}
    bad = write_config(tmp_path / "bad.toml", tmp_path, events={"max_payload_bytes": 400},
                       **state)
    good = write_config(tmp_path / "good.toml", tmp_path, events={"ignore": ["Gift Card Redeemed"]},
                        **state)
    dl = tmp_path / "dead-letters.jsonl"

    r = nudge("replay", *map(str, files), "--config", str(bad),
              "--decisions", str(tmp_path / "d1.jsonl"))
    assert r.returncode == 0, r.stderr
    assert {d["customer_id"] for d in decisions(tmp_path / "d1.jsonl")} == {"a"}
    dead = [DeadLetter.from_json(orjson.loads(x)) for x in dl.read_bytes().splitlines()]
    assert all(exact for _, exact in dead)
    by_pos = {(Path(d.position.source).name, d.position.offset): d for d, _ in dead
              if d.position is not None}
    # the dead-letter file gives back every original line byte for byte, UTF-8 or not
    for f, lines in zip(files, (part0, part1), strict=True):
        for line_no, raw in enumerate(lines, start=1):
            if (f.name, line_no) in by_pos:
                assert by_pos[(f.name, line_no)].raw == raw
    assert by_pos[("events-1.jsonl", 6)].reason == "payload_too_large"

    # dry run: says what would happen, writes nothing
    out = tmp_path / "replay-1"
    r = nudge("deadletters", "replay", "--config", str(good), "--out", str(out), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "re-fed                 6   (dry run" in r.stdout
    assert "dry run: nothing was written" in r.stdout
    assert not out.exists() and not (tmp_path / "replayed").exists()

    r = nudge("deadletters", "replay", "--config", str(good), "--out", str(out))
    assert r.returncode == 0, r.stderr
    replay_files = [out / "events-0.replay.jsonl", out / "events-1.replay.jsonl"]
    assert sorted(out.iterdir()) == replay_files
    # one replay file per source file, the original lines in their original order
    assert replay_files[0].read_bytes() == b"".join(x + b"\n" for x in part0[2:4] + part0[5:])
    assert replay_files[1].read_bytes() == b"".join(x + b"\n" for x in (part1[0], part1[2],
                                                                        part1[6]))
    stdout = r.stdout
    assert "re-fed                 6" in stdout and "now ignored            1" in stdout
    assert "still failing          3" in stdout
    assert f"invalid_utf8                  2  {files[1]}:5, {files[1]}:6" in stdout
    assert f"invalid_json                  1  {files[1]}:4" in stdout
    assert f"--dead-letters {out / 'dead-letters.jsonl'}" in stdout
    for private in ("\"b\"", "notes", BIG[:20]):
        assert private not in stdout + r.stderr  # no customer ids or payloads printed

    r = nudge("replay", *map(str, replay_files), "--config", str(good),
              "--decisions", str(tmp_path / "d2.jsonl"),
              "--dead-letters", str(out / "dead-letters.jsonl"))
    assert r.returncode == 0, r.stderr
    recovered = decisions(tmp_path / "d2.jsonl")
    assert [(d["customer_id"], d["outcome"], d["due"]) for d in recovered] == [
        ("b", "sent", "2026-10-05T11:03:00Z"), ("d", "sent", "2026-10-05T11:04:00Z")]
    assert not decisions(out / "dead-letters.jsonl")
    assert dl.exists()  # the original dead letters are still there for the next fix

    # again: nothing is re-fed twice; the ignored one stays handled; failures still listed
    r = nudge("deadletters", "replay", "--config", str(good), "--from", str(dl),
              "--out", str(tmp_path / "r2"))
    assert r.returncode == 0, r.stderr
    assert "re-fed                 0" in r.stdout
    assert "already re-fed         6" in r.stdout and "already ignored        1" in r.stdout
    assert "still failing          3" in r.stdout
    assert not (tmp_path / "r2").exists()

    # the same dead letters made again by a second run over the same input: still once
    r = nudge("replay", *map(str, files), "--config", str(bad),
              "--decisions", str(tmp_path / "d3.jsonl"))
    assert r.returncode == 0, r.stderr
    r = nudge("deadletters", "replay", "--config", str(good))
    assert "re-fed                 0" in r.stdout and "already re-fed         6" in r.stdout


def letters_file(path: Path, letters: list[DeadLetter]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d.to_json()) + b"\n" for d in letters))
    return path


def config_for(tmp_path: Path, **events: object) -> Config:
    from dataclasses import replace

    cfg = Config()
    return replace(cfg, events=replace(cfg.events, **events),
                   outputs=OutputsConfig(str(tmp_path / "d.jsonl"), str(tmp_path / "dl.jsonl")),
                   dead_letter_replay=DeadLetterReplayConfig(str(tmp_path / "replayed"),
                                                             str(tmp_path / "replay")))


def test_still_failing_records_are_skipped_with_reasons_and_not_recorded(tmp_path: Path) -> None:
    bad = bad_records(random.Random(9), 300)
    letters = [DeadLetter("parse", reason, "d", Position("in/e.jsonl", -1, i), raw)
               for i, (reason, raw) in enumerate(bad, start=1)]
    cfg = config_for(tmp_path)
    letters_file(tmp_path / "dl.jsonl", letters)
    for _ in range(2):  # the second run finds them all again: failures are never recorded
        report, files = replay_dead_letters(cfg)
        assert files == [] and report.refeed == []
        assert report.still == Counter(reason for reason, _ in bad)
        assert report.already.total() == 0
    first_json = [f"in/e.jsonl:{d.position.offset}" for d in letters
                  if d.reason == "invalid_json" and d.position][:3]
    assert report.first["still invalid_json"] == first_json
    store = ReplayStore(cfg.dead_letter_replay.state_dir)
    assert store.count() == 0
    store.close()


def test_render_and_deliver_dead_letters_are_reported_not_refed(tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    letters_file(tmp_path / "dl.jsonl", [
        DeadLetter("render", "render_failed", "x", None, b"c1\x1fcart_abandonment\x1f1\x1f1"),
        DeadLetter("parse", "invalid_json", "x", Position("e.jsonl", -1, 1), add("u", 1)),
    ])
    (tmp_path / "dl.delivery.jsonl").write_bytes(orjson.dumps(DeadLetter(
        "deliver", "permanent_failure", "esp: 400", None, b"{}").to_json()) + b"\n")
    report, files = replay_dead_letters(cfg, out=str(tmp_path / "out"))
    assert report.other == Counter({("render", "render_failed"): 1,
                                    ("deliver", "permanent_failure"): 1})
    assert len(report.refeed) == 1 and files == [tmp_path / "out" / "e.replay.jsonl"]
    assert report.sources == [str(tmp_path / "dl.jsonl"), str(tmp_path / "dl.delivery.jsonl")]


def test_old_format_lines_exact_ones_refed_ambiguous_ones_skipped(tmp_path: Path) -> None:
    good = add("u", 1)
    escaped = orjson.dumps({**orjson.loads(add("v", 2)), "note": "C:\\x41"})
    lines = []
    for i, raw, reason in [(1, good, "payload_too_large"), (2, escaped, "payload_too_large"),
                           (3, escaped, "unknown_event"), (4, good, "payload_too_large")]:
        obj = DeadLetter("parse", reason, "x", Position("e.jsonl", -1, i), raw).to_json()
        del obj["raw_b64"]  # as written before the field existed
        lines.append(orjson.dumps(obj))
    (tmp_path / "dl.jsonl").write_bytes(b"\n".join(lines) + b"\n" + b"{not a dead letter\n")
    report, _ = replay_dead_letters(config_for(tmp_path), dry_run=True)
    # 2: `\x41` could be a byte that was lost; 3: that reason proves the bytes were UTF-8
    assert [r.position.offset for r in report.refeed] == [1, 3, 4]
    assert report.skipped == Counter({"bytes_not_recoverable": 1, "unreadable": 1})
    assert report.first["unreadable"][0].startswith(f"{tmp_path / 'dl.jsonl'}:5 (")


def test_repeated_and_foreign_dead_letters(tmp_path: Path) -> None:
    raw = add("u", 1)
    twice = DeadLetter("parse", "payload_too_large", "x", Position("e.jsonl", -1, 7), raw)
    foreign = DeadLetter("parse", "payload_too_large", "x", Position("other-topic", 0, 3), raw)
    letters_file(tmp_path / "dl.jsonl", [twice, twice, foreign])
    report, files = replay_dead_letters(config_for(tmp_path), out=str(tmp_path / "o"))
    assert report.repeated == 1 and report.skipped == Counter({"other_topic": 1})
    assert files[0].read_bytes() == raw + b"\n"  # once


def test_an_interrupted_commit_is_finished_by_the_next_run(tmp_path: Path) -> None:
    cfg = config_for(tmp_path)
    final = tmp_path / "replay" / "run" / "e.replay.jsonl"
    final.parent.mkdir(parents=True)
    partial = final.with_name(final.name + ".partial")
    partial.write_bytes(add("u", 1) + b"\n")
    key = letter_key(Position("e.jsonl", -1, 1), add("u", 1))
    store = ReplayStore(cfg.dead_letter_replay.state_dir)
    # the crash came after the store batch and before the rename
    store.commit({key: {"outcome": "refed"}}, ("run-1", {"files": [str(final)]}))
    notes = finish_interrupted(store)
    assert final.exists() and not partial.exists()
    assert notes and "run-1" in notes[0]
    assert store.pending_runs() == [] and key in store
    store.close()


def test_a_record_with_line_breaks_becomes_one_line_with_the_same_event() -> None:
    raw = b'{"type": "track",\r\n "event": "Product Viewed", "userId": "u",\n' \
          b'"timestamp": "2026-10-05T10:00:00Z", "properties": {"product_id": "p"}}\r'
    line = one_line(raw, Config())
    assert b"\n" not in line and b"\r" not in line and len(line) == len(raw)


def test_store_is_read_only_in_dry_runs_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    store = ReplayStore(tmp_path / "none", read_only=True)
    assert store.count() == 0 and "k" not in store
    store.close()
    assert not (tmp_path / "none").exists()


def test_dead_letter_topic_records_read_back_from_their_headers() -> None:
    from nudge.app.deadletters import Stored, Unreadable, from_headers
    from nudge.kafka.sinks import dead_letter_headers

    raw = b'{"not": "utf-8 \xff"}'
    letter = DeadLetter("parse", "invalid_utf8", "record is not valid UTF-8",
                        Position("shop", 2, 41), raw)
    headers = {k: v if isinstance(v, bytes) else b"" for k, v in dead_letter_headers(letter)}
    back = from_headers(raw, headers, "dlq[0]@5")
    assert back == Stored(letter, True, "dlq[0]@5")
    render = DeadLetter("render", "render_failed", "x", None, b"key")
    headers = {k: v if isinstance(v, bytes) else b"" for k, v in dead_letter_headers(render)}
    assert from_headers(b"key", headers, "w") == Stored(render, True, "w")
    # a record some other tool wrote: no reason header
    assert isinstance(from_headers(b"x", {"a": b"1"}, "w"), Unreadable)
