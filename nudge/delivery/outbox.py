"""The outbox transport: one RFC 5322 `.eml` file per email, plus an `index.html` preview.

A file's name derives from the due time, the trigger and the idempotency key, and is
written atomically (temp file, then rename), so re-sending a decision rewrites the same
file: the outbox is idempotent by construction.
"""

from __future__ import annotations

import html
import os
from email import policy
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import quote

from nudge.core.errors import TransientDeliveryError
from nudge.core.ids import key_digest
from nudge.core.records import Email
from nudge.core.timefmt import to_iso
from nudge.delivery.message import to_bytes


def filename(email: Email) -> str:
    when = to_iso(email.due).replace(":", "").replace("-", "")
    return f"{when}-{email.trigger}-{email.stage}-{key_digest(email.key)[:16]}.eml"


def erase_files(directory: str | Path, keys: list[str]) -> int:
    """Delete the emails of these idempotency keys (an erasure) and rewrite the index."""
    directory = Path(directory)
    gone = 0
    for key in keys:
        for path in directory.glob(f"*-{key_digest(key)[:16]}.eml"):
            path.unlink()
            gone += 1
    if gone and (directory / "index.html").exists():
        write_index(directory)
    return gone


class OutboxTransport:
    name = "outbox"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def send(self, email: Email) -> str:
        path = self.directory / filename(email)
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(to_bytes(email))
            os.replace(tmp, path)
        except OSError as exc:
            raise TransientDeliveryError(f"outbox {self.directory}: {exc.strerror}") from None
        return str(path)

    def close(self) -> None:
        write_index(self.directory)


def _part(msg: object, subtype: str) -> str:
    body = msg.get_body(preferencelist=(subtype,))  # type: ignore[attr-defined]
    return body.get_content() if body is not None else ""


PREVIEW_PER_TRIGGER = 40


REPORT_LINK = "report-link.txt"  # the outbox's pointer to the HTML report (`nudge report`)


def link_report(directory: Path, report: Path) -> Path:
    """Point the outbox's index at the HTML report (kept across later index rewrites)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(report.resolve(), directory.resolve())
    (directory / REPORT_LINK).write_text(target, encoding="utf-8")
    return write_index(directory)


def write_index(directory: Path) -> Path:
    """A page previewing the folder's emails in sandboxed iframes: the first 40 of each
    journey by due time, so every journey shows; the rest are counted, and every .eml opens
    in any mail client. Links the HTML report when `link_report` named one."""
    all_files = sorted(directory.glob("*.eml"))
    by_trigger: dict[str, list[Path]] = {}
    for path in all_files:
        trigger = path.name.split("-")[1] if path.name.count("-") >= 3 else "other"
        by_trigger.setdefault(trigger, []).append(path)
    files = sorted(p for group in by_trigger.values() for p in group[:PREVIEW_PER_TRIGGER])
    parser = BytesParser(policy=policy.default)
    rows = []
    for path in files:
        with path.open("rb") as f:
            msg = parser.parse(f)
        rows.append(
            "<section>"
            f"<h2>{html.escape(str(msg['Subject']))}</h2>"
            f"<p class=meta>{html.escape(str(msg['Date']))} &middot; to "
            f"{html.escape(str(msg['To']))} &middot; <a href=\"{html.escape(path.name)}\">"
            f"{html.escape(path.name)}</a></p>"
            f"<iframe sandbox srcdoc=\"{html.escape(_part(msg, 'html'), quote=True)}\"></iframe>"
            "</section>"
        )
    counts = ", ".join(f"{html.escape(t)} {len(g)}" for t, g in sorted(by_trigger.items()))
    link = directory / REPORT_LINK
    report = link.read_text(encoding="utf-8").strip() if link.exists() else ""
    page = (
        "<!DOCTYPE html><html><head><meta charset=utf-8><title>Nudge outbox</title><style>"
        "body{font-family:Helvetica,Arial,sans-serif;background:#eee;margin:0;padding:24px}"
        "section{background:#fff;margin:0 auto 24px;max-width:680px;padding:16px;"
        "border-radius:8px}h2{font-size:17px;margin:0 0 4px}.meta{color:#777;font-size:13px}"
        "iframe{width:100%;height:620px;border:1px solid #ddd}</style></head><body>"
        f"<h1>Nudge outbox: {len(all_files)} emails</h1><p>{counts}</p>"
        + (f"<p><a href=\"{html.escape(quote(report), quote=True)}\">The report: what these "
           "emails earned, per journey, stage and variant</a></p>" if report else "")
        + (f"<p>Showing the first {PREVIEW_PER_TRIGGER} of each journey.</p>"
           if len(files) < len(all_files) else "")
        + "".join(rows) + "</body></html>"
    )
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
