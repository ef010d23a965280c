"""The unsubscribe pages: plain HTML, no JavaScript, no external resources; labelled form
controls in a fieldset, visible focus, system fonts at a readable size and contrast (WCAG
AA), and a page that works at any width."""

from __future__ import annotations

from html import escape

_STYLE = """
body{margin:0;font:18px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#f6f4f0;color:#1f1f1f}
main{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:8px}
h1{font-size:1.6rem;margin:0 0 1rem}
fieldset{border:1px solid #b5b0a8;border-radius:6px;margin:1.5rem 0;padding:1rem 1.25rem}
legend{font-weight:600;padding:0 .25rem}
label{display:block;padding:.4rem 0;cursor:pointer}
input[type=radio]{width:1.2rem;height:1.2rem;margin-right:.6rem;vertical-align:-.15rem}
button{font:inherit;font-weight:600;color:#fff;background:#1d4ed8;border:0;border-radius:6px;
padding:.75rem 1.5rem;cursor:pointer}
button:focus-visible,input:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
p.note{color:#4a4a4a;font-size:1rem}
"""


def _page(title: str, body: str, status_role: bool = False) -> bytes:
    role = ' role="status"' if status_role else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="robots" content="noindex">\n<title>{escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<main{role}>\n{body}\n</main>\n"
            f"</body>\n</html>\n").encode()


def journey_label(trigger: str) -> str:
    return trigger.replace("_", " ")


def confirm(shop: str, trigger: str, action: str) -> bytes:
    """GET /u/{token}: what unsubscribing means, two choices, one button."""
    kind = escape(journey_label(trigger))
    return _page(f"Unsubscribe from {shop}", f"""<h1>Unsubscribe from {escape(shop)} emails</h1>
<form method="post" action="{escape(action)}">
<fieldset>
<legend>Which emails should stop?</legend>
<label><input type="radio" name="scope" value="all" checked> All emails from {escape(shop)}</label>
<label><input type="radio" name="scope" value="{escape(trigger)}">
Only reminders like this one ({kind})</label>
</fieldset>
<button type="submit">Unsubscribe</button>
</form>
<p class="note">You can sign up again at any time from your account.</p>""")


def done(shop: str, scope: str, trigger: str) -> bytes:
    what = (f"any more emails from {escape(shop)}" if scope == "all"
            else f"any more {escape(journey_label(trigger))} emails")
    return _page("Unsubscribed", f"""<h1>You are unsubscribed</h1>
<p>You will not receive {what}.</p>
<p class="note">It can take a few minutes for emails already on their way to stop.</p>""",
                 status_role=True)


def refused(message: str) -> bytes:
    return _page("Link not valid", f"""<h1>This link is not valid</h1>
<p>{escape(message)}</p>
<p class="note">Use the unsubscribe link of a recent email, or reply to it and ask us.</p>""")
