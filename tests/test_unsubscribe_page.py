"""The unsubscribe page in a real browser: Debian's headless Chromium loads `GET /u/{token}`
from `nudge serve` and renders the form; the screenshot is kept
(var/screenshots/unsubscribe.png) for a person to look at. Needs `apt-get install chromium`.

    NUDGE_SCREENSHOT_DIR=var/screenshots .venv/bin/python -m pytest tests/test_unsubscribe_page.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nudge.core.keyring import Keyring
from nudge.core.tokens import Claims, sign
from tests.broker import Broker
from tests.servetools import running_service, serve_config

pytestmark = pytest.mark.broker
SECRET = "unsubscribe-page-test-key-0123456789abcdef"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Accessibility(HTMLParser):
    """What a screen reader needs from this page: a language, a title, a heading, every
    control inside a label, the choices grouped with a legend, and no script."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.found: dict[str, int] = {}
        self.unlabelled = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html" and a.get("lang"):
            self.found["lang"] = 1
        if tag == "input" and "label" not in self.stack:
            self.unlabelled += 1
        self.found[tag] = self.found.get(tag, 0) + 1
        if tag not in ("input", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_unsubscribe_page_renders_without_javascript_in_chromium(broker: Broker,
                                                                 tmp_path: Path) -> None:
    topic = broker.create_topic("serve-page", partitions=1)
    conf = serve_config(tmp_path, broker, topic, secrets={"signing_key": "k1"},
                        **{"secrets.keys.k1": {"env": "NUDGE_TEST_SIGNING_KEY"}})
    token = sign(Keyring({"k1": SECRET.encode()}, signing_id="k1"),
                 Claims("unsubscribe", "u1", "cart_abandonment", 1, 1, None, "", 2 * 10**12))
    shots = Path(os.environ.get("NUDGE_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "unsubscribe.png"
    with running_service(conf, env={"NUDGE_TEST_SIGNING_KEY": SECRET}) as (url, _proc):
        common = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                  "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}"]
        page = f"{url}/u/{token}"
        # headless Chromium takes its screenshot and DOM with script of its own, so script is
        # not switched off in the browser: the page's Content-Security-Policy (default-src
        # 'none') forbids every script of the page, which is what "works without
        # JavaScript" needs
        dom = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        subprocess.run([*common, f"--screenshot={shot}", "--window-size=800,700", page],
                       capture_output=True, timeout=120, check=True)
    a = Accessibility()
    a.feed(dom)
    assert a.found.get("lang") and a.found.get("title") and a.found.get("h1")
    assert a.found.get("form") == 1 and a.found.get("fieldset") and a.found.get("legend")
    assert a.found.get("input") == 2 and a.unlabelled == 0 and a.found.get("button") == 1
    assert "script" not in a.found
    assert "cart abandonment" in dom and "All emails from" in dom
    assert shot.stat().st_size > 5_000  # a rendered page, not a blank one
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
