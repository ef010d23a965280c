"""The command line and the config file, as a user meets them."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from nudge.app.sample import generate
from nudge.core.config import ConfigError, load, load_text
from tests.events import add, identify, view

ROOT = Path(__file__).resolve().parent.parent


def nudge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nudge", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, check=False,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.mark.parametrize(("text", "message"), [
    ("shards = 0", "config shards: must be at least 1"),
    ("[caps]\nwindow = \"1x\"", "config caps.window: invalid duration '1x'"),
    ("[caps]\nmax = 2", "config caps.max: unknown key"),
    ("[triggers.cart_abandonment]\nstages = [\"2h\", \"1h\"]",
     "config triggers.cart_abandonment.stages: delays must increase"),
    ("[triggers.cart_abandonment]\nstages = [\"1h\", 5]",
     "config triggers.cart_abandonment.stages[1]: expected a string"),
    ("[delivery]\ntransport = \"fax\"", "config delivery.transport: must be one of"),
    ("[quiet_hours]\nstart = \"25:00\"", "config quiet_hours.start: expected a local time"),
    ("[quiet_hours]\ndefault_timezone = \"Mars/Base\"",
     "config quiet_hours.default_timezone: unknown IANA timezone"),
    ("[kafka]\nbrokers = []", "config kafka.brokers: needs at least one"),
    ("shards = [", "not valid TOML"),
])
def test_bad_config_fails_with_the_key_path(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_text(text)


def test_defaults_and_overrides() -> None:
    cfg = load_text('[triggers.cart_abandonment]\nstages = ["1h", "24h"]\n[caps]\nmax_emails = 2')
    assert [s.delay for s in cfg.trigger("cart_abandonment").stages] == [3_600_000, 86_400_000]
    assert (cfg.caps.max_emails, cfg.caps.window) == (2, 86_400_000)
    assert load(None).quiet_hours.enabled is False


def test_replay_command_writes_the_decision_log(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([identify("u", 0), add("u", 1), view("z", 500),
                                   b"{broken"]) + b"\n")
    conf = tmp_path / "c.toml"
    conf.write_text(f'[triggers.cart_abandonment]\nstages = ["30m"]\n[delivery]\n'
                    f'ledger_dir = "{tmp_path / "ledger"}"\n[outputs]\n'
                    f'dead_letters = "{tmp_path / "dl.jsonl"}"\n')
    out = tmp_path / "decisions.jsonl"
    r = nudge("replay", str(events), "--config", str(conf), "--decisions", str(out),
              "--outbox", str(tmp_path / "outbox"))
    assert r.returncode == 0, r.stderr
    assert [orjson.loads(x) for x in out.read_bytes().splitlines()] == [
        {"customer_id": "u", "trigger": "cart_abandonment", "episode": 1, "stage": 1,
         "due": "2026-10-05T10:31:00Z", "outcome": "sent", "reason": None}]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1
    assert (tmp_path / "outbox" / "index.html").exists()
    dead = [orjson.loads(x) for x in (tmp_path / "dl.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["offset"], d["raw"]) for d in dead] == [
        ("invalid_json", 4, "{broken")]
    assert "decisions: 1 for 1 customers" in r.stdout


def test_bad_config_on_the_command_line_exits_2_with_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text('[caps]\nwindow = "soon"\n')
    r = nudge("replay", "x.jsonl", "--config", str(conf), "--decisions", str(tmp_path / "d"))
    assert r.returncode == 2
    assert "config caps.window: invalid duration 'soon'" in r.stderr


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    r = nudge("replay", str(tmp_path / "nope.jsonl"), "--decisions", str(tmp_path / "d"))
    assert r.returncode == 2 and "nope.jsonl: not found" in r.stderr


def test_two_input_files_with_one_name_are_refused(tmp_path: Path) -> None:
    # a partition is keyed by its file name in recovery state: two must not share one
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "events.jsonl").write_bytes(b"")
    r = nudge("replay", str(tmp_path / "a" / "events.jsonl"), str(tmp_path / "b" / "events.jsonl"),
              "--decisions", str(tmp_path / "d"))
    assert r.returncode == 2 and "have the same name" in r.stderr


def test_preview_command(tmp_path: Path) -> None:
    r = nudge("preview", "--out", str(tmp_path / "p.html"))
    assert r.returncode == 0, r.stderr
    assert "<!DOCTYPE html>" in (tmp_path / "p.html").read_text()


def test_sample_is_deterministic(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    sa = generate(a, customers=200, days=2, seed=3, bad_ratio=0.01)
    generate(b, customers=200, days=2, seed=3, bad_ratio=0.01)
    generate(c, customers=200, days=2, seed=4, bad_ratio=0.01)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert sa.events > 1000 and sa.bad > 0


def test_bundled_sample_is_current() -> None:
    """The demo sample is exactly what the documented command generates."""
    import io

    buf = io.BytesIO()
    generate(buf, customers=1200, days=7, seed=7, bad_ratio=0.003)
    assert buf.getvalue() == (ROOT / "nudge" / "data" / "sample-events.jsonl").read_bytes()


def test_bundled_catalog_is_current() -> None:
    """The demo's catalog feed is exactly what `python -m nudge.app.sample --catalog` writes."""
    from nudge.app.samplecatalog import catalog_csv

    assert catalog_csv() == (ROOT / "nudge" / "data" / "catalog.csv").read_text("utf-8")
def test_an_error_inside_the_dataflow_is_one_line_naming_the_config_key(tmp_path: Path) -> None:
    """A NudgeError raised by a step reaches the user as `nudge: ...`, not as Bytewax's
    error and two tracebacks: here the ledger, locked by this process."""
    from nudge.delivery.ledger import Ledger

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([identify("u", 0), add("u", 1), view("z", 500)]) + b"\n")
    conf = tmp_path / "c.toml"
    conf.write_text(f'[delivery]\nledger_dir = "{tmp_path / "ledger"}"\n[outputs]\n'
                    f'dead_letters = "{tmp_path / "dl.jsonl"}"\n')
    held = Ledger(tmp_path / "ledger")
    try:
        r = nudge("replay", str(events), "--config", str(conf), "--decisions",
                  str(tmp_path / "d.jsonl"), "--outbox", str(tmp_path / "outbox"))
    finally:
        held.close()
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"nudge: ledger {tmp_path / 'ledger'} (config delivery.ledger_dir): "
                           "cannot open:")


def test_a_snapshot_of_another_format_is_a_one_line_nudge_error() -> None:
    from nudge.core.errors import NudgeError, SnapshotError
    from nudge.scoring.propensity import PropensityModel
    from nudge.scoring.recommend import ItemModel

    for restore in (lambda: ItemModel(resume={"format": 0}),
                    lambda: PropensityModel(resume=pickle.dumps({"format": 0}))):
        with pytest.raises(SnapshotError) as info:
            restore()
        assert isinstance(info.value, NudgeError)
        assert "is of format 0" in str(info.value) and "start with a new recovery.dir" in str(
            info.value) and "\n" not in str(info.value)
