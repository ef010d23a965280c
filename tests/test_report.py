"""`nudge report`: the text and HTML forms from decision and outcome files, the outbox link,
and the HTML page in a real browser (Debian's headless Chromium, when installed:
`apt-get install chromium`)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import orjson
import pytest

from nudge.app.cli import main
from nudge.app.report import build, format_text
from nudge.app.reporthtml import render
from nudge.core.timefmt import parse_iso
from nudge.delivery.outbox import write_index


def _lines(n_control: int, k_control: int, n_variant: int, k_variant: int,
           n_hold: int, k_hold: int) -> tuple[list[dict], list[dict]]:
    decisions, outcomes = [], []
    arms = [("control", n_control, k_control), ("urgency", n_variant, k_variant),
            (None, n_hold, k_hold)]
    i = 0
    for variant, n, k in arms:
        for j in range(n):
            i += 1
            cid = f"c{i}"
            due = f"2026-10-{5 + j % 3:02d}T10:00:00Z"
            d = {"customer_id": cid, "trigger": "cart_abandonment", "episode": 1, "stage": 1,
                 "due": due, "outcome": "sent" if variant else "holdout", "reason": None}
            if variant:
                d["variant"] = variant
            decisions.append(d)
            conv = j < k
            outcomes.append({"customer_id": cid, "trigger": "cart_abandonment", "episode": 1,
                             "stage": 1, "decided": due, "variant": variant,
                             "arm": "sent" if variant else "holdout",
                             "outcome": "converted" if conv else "not_converted",
                             "at": due, "revenue": 50.0 if conv else 0.0})
            if variant and j % 2 == 0:
                outcomes.append({**outcomes[-1], "outcome": "opened", "revenue": 0.0})
    for k in range(3):
        decisions.append({"customer_id": f"s{k}", "trigger": "cart_abandonment", "episode": 1,
                          "stage": 1, "due": "2026-10-05T10:00:00Z", "outcome": "suppressed",
                          "reason": "no_consent"})
    return decisions, outcomes


def test_text_report_counts_and_verdicts() -> None:
    d, o = _lines(400, 40, 400, 68, 200, 10)
    r = build(d, o, min_sample=100)
    (j,) = r.journeys
    (st,) = j.stages
    assert st.suppressed == {"no_consent": 3} and st.decided == 1003
    assert [a.name for a in st.arms.values()] == ["control", "urgency", "holdout"]
    assert st.arms["urgency"].opened == 200 and st.arms["holdout"].opened == 0
    text = format_text(r)
    assert "urgency vs control (400 vs 400): 17.0% vs 10.0%" in text
    assert "significant at 5%" in text
    assert "emails vs holdout (episodes: 800 vs 200): 13.5% vs 5.0%" in text
    assert "p-values assume one look" in text  # the peeking warning
    small = format_text(build(*_lines(20, 2, 20, 5, 10, 1), min_sample=100))
    assert "not enough data (under 100 in an arm)" in small
    since = build(d, o, min_sample=100, since=parse_iso("2026-10-07T00:00:00Z"))  # 1 day in 3
    assert since.journeys[0].stages[0].arms["control"].decided == 133


def test_cli_report_writes_html_linked_from_the_outbox(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    d, o = _lines(150, 15, 150, 30, 60, 3)
    (tmp_path / "decisions.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in d))
    (tmp_path / "outcomes.jsonl").write_bytes(b"\n".join(orjson.dumps(x) for x in o))
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    cfg = tmp_path / "nudge.toml"
    cfg.write_text(f'[outputs]\ndecisions = "{tmp_path}/decisions.jsonl"\n'
                   f'outcomes = "{tmp_path}/outcomes.jsonl"\n'
                   f'[delivery]\noutbox_dir = "{outbox}"\n[report]\nmin_sample = 50\n')
    assert main(["report", "--config", str(cfg), "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr().out
    assert "urgency vs control (150 vs 150): 20.0% vs 10.0%" in out
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "urgency" in page and "<script" not in page
    index = (outbox / "index.html").read_text()
    assert 'href="../r.html"' in index
    write_index(outbox)  # a later rewrite by the outbox keeps the link
    assert 'href="../r.html"' in (outbox / "index.html").read_text()
    assert main(["report", "--config", str(cfg), "--since", "yesterday"]) == 2


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_html_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    """The page as a browser draws it: the DOM has the plots, the screenshot is an image."""
    d, o = _lines(150, 15, 150, 30, 60, 3)
    page = tmp_path / "report.html"
    page.write_text(render(build(d, o, min_sample=50)), encoding="utf-8")
    base = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert dom.count("<circle") == 5  # control, urgency, holdout + emails, holdout
    assert "significant at 5%" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*base, "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert _png_size(shot) == (1000, 1400)


@pytest.mark.slow
def test_demo_prints_the_short_report_and_links_the_html(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "orders credited to a decision" in out
    assert "cart_abandonment:" in out and "emails vs holdout" in out
    assert 'href="../report.html"' in (tmp_path / "outbox" / "index.html").read_text()
    assert "<svg" in (tmp_path / "report.html").read_text()
