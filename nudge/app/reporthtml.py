"""The report as one self-contained HTML page: inline SVG plots and CSS, no script, no
external asset, so it opens from a file in any browser, offline, and can be mailed.

Plots: conversion by arm with 95% intervals (per journey and per stage), the funnel
(decided, sent, delivered, opened, clicked, converted) and outcomes over time.

>>> from nudge.app.report import build
>>> page = render(build([], [], min_sample=100))
>>> page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
True
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from nudge.app.report import ENGAGEMENT, Arm, Journey, Report, verdict
from nudge.app.stats import PEEKING, Comparison

ACCENT = "#2f6fdf"
MUTED = "#8a8f98"
HOLD = "#d9822b"
CSS = (
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "color:#1d2330;background:#f5f6f8;margin:0;padding:24px}"
    "main{max-width:980px;margin:0 auto}"
    "section{background:#fff;border-radius:10px;padding:18px 22px;margin:0 0 20px;"
    "box-shadow:0 1px 2px rgba(0,0,0,.06)}"
    "h1{font-size:24px;margin:0 0 6px}h2{font-size:19px;margin:0 0 8px}"
    "h3{font-size:16px;margin:18px 0 6px}"
    "table{border-collapse:collapse;width:100%;font-size:13.5px;margin:6px 0}"
    "th,td{padding:4px 8px;text-align:right;border-bottom:1px solid #e7e9ee;white-space:nowrap}"
    "th:first-child,td:first-child{text-align:left}th{color:#5b6270;font-weight:600}"
    ".note{color:#5b6270;font-size:13.5px}.verdict{margin:4px 0}"
    ".sig{color:#1a7f37;font-weight:600}.weak{color:#9a6700}.none{color:#6e7781}"
    "svg{display:block;max-width:100%;height:auto}"
)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _intervals(rows: list[Arm], width: int = 760) -> str:
    """Each arm's conversion rate (dot) and 95% Wilson interval (whisker)."""
    if not rows:
        return ""
    label_w, right = 130, 150
    plot_w = width - label_w - right
    top = max(hi for a in rows for hi in (a.interval[1],)) or 0.01
    top = min(1.0, top * 1.1)
    row_h = 30
    height = 28 + row_h * len(rows)
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="conversion rate by arm with 95% intervals">']
    for i in range(5):  # the axis: five ticks
        x = label_w + plot_w * i / 4
        out.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 20}" '
                   f'stroke="#e7e9ee"/><text x="{x:.1f}" y="{height - 6}" font-size="11" '
                   f'fill="{MUTED}" text-anchor="middle">{_pct(top * i / 4)}</text>')
    for i, a in enumerate(rows):
        y = 16 + i * row_h
        lo, hi = a.interval

        def sx(v: float) -> float:
            return label_w + plot_w * v / top

        colour = HOLD if a.name == "holdout" else ACCENT
        out.append(f'<text x="{label_w - 10}" y="{y + 4}" font-size="13" text-anchor="end">'
                   f'{escape(a.name)}</text>')
        if a.settled:
            out.append(f'<line x1="{sx(lo):.1f}" y1="{y}" x2="{sx(hi):.1f}" y2="{y}" '
                       f'stroke="{colour}" stroke-width="3" stroke-linecap="round"/>'
                       f'<circle cx="{sx(a.rate):.1f}" cy="{y}" r="5.5" fill="{colour}"/>'
                       f'<text x="{width - right + 8}" y="{y + 4}" font-size="12">'
                       f'{_pct(a.rate)} (n={a.settled})</text>')
        else:
            out.append(f'<text x="{label_w + 4}" y="{y + 4}" font-size="12" fill="{MUTED}">'
                       "no settled outcomes yet</text>")
    out.append("</svg>")
    return "".join(out)


def _funnel(steps: list[tuple[str, int]], width: int = 760) -> str:
    if not steps or not steps[0][1]:
        return ""
    label_w = 110
    plot_w = width - label_w - 120
    first = steps[0][1]
    height = 10 + 28 * len(steps)
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'role="img" aria-label="funnel">']
    for i, (name, n) in enumerate(steps):
        y = 6 + 28 * i
        w = max(1.0, plot_w * n / first)
        out.append(f'<text x="{label_w - 10}" y="{y + 15}" font-size="13" text-anchor="end">'
                   f'{escape(name)}</text><rect x="{label_w}" y="{y}" width="{w:.1f}" '
                   f'height="20" rx="3" fill="{ACCENT}" fill-opacity="{1 - 0.12 * i:.2f}"/>'
                   f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{n:,} '
                   f'({_pct(n / first)})</text>')
    out.append("</svg>")
    return "".join(out)


def _timeline(days: list[tuple[str, int, int, float]], width: int = 900) -> str:
    """Emails sent per day (bars) and conversions credited per day (bars below)."""
    if not days:
        return ""
    left, gap = 44, 3
    plot_w = width - left - 10
    bar = max(2.0, plot_w / len(days) - gap)
    hs, hc = 110, 80
    height = hs + hc + 60
    top_s = max(d[1] for d in days) or 1
    top_c = max(d[2] for d in days) or 1
    out = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           'role="img" aria-label="emails sent and conversions per day">',
           f'<text x="0" y="12" font-size="12" fill="{MUTED}">sent / day (max {top_s:,})</text>',
           f'<text x="0" y="{hs + 34}" font-size="12" fill="{MUTED}">conversions / day '
           f'(max {top_c:,})</text>']
    for i, (day, sent, conv, revenue) in enumerate(days):
        x = left + i * (bar + gap)
        h1 = (hs - 20) * sent / top_s
        h2 = (hc - 10) * conv / top_c
        out.append(f'<rect x="{x:.1f}" y="{hs - h1:.1f}" width="{bar:.1f}" height="{h1:.1f}" '
                   f'fill="{ACCENT}"><title>{day}: {sent} sent</title></rect>'
                   f'<rect x="{x:.1f}" y="{hs + hc + 20 - h2:.1f}" width="{bar:.1f}" '
                   f'height="{h2:.1f}" fill="#1a7f37"><title>{day}: {conv} conversions, '
                   f'{revenue:,.2f} revenue</title></rect>')
        if len(days) <= 16 or i % max(1, len(days) // 8) == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{height - 6}" font-size="10" '
                       f'fill="{MUTED}" text-anchor="middle">{day[5:]}</text>')
    out.append("</svg>")
    return "".join(out)


def _verdict(c: Comparison, what: str, min_sample: int) -> str:
    v = verdict(c, min_sample)
    cls = "sig" if v.startswith("significant") else "none" if v.startswith("not enough") \
        else "weak"
    lift = f"{c.lift:+.0%}" if c.lift is not None else "n/a"
    return (f'<p class="verdict">{escape(what)}: {_pct(c.rate_b)} vs {_pct(c.rate_a)}, '
            f"{100 * c.diff:+.1f} pp ({lift}), p = {c.p_value:.3f}, probability to be better "
            f'{c.prob_beat:.0%}. <span class="{cls}">{escape(v)}</span></p>')


def _table(arms: list[Arm], tracked: tuple[str, ...]) -> str:
    head = ("<tr><th>arm</th><th>recipients</th>"
            + "".join(f"<th>{k}</th>" for k in ENGAGEMENT if k in tracked)
            + "<th>settled</th><th>converted</th><th>rate</th><th>95% CI</th>"
              "<th>revenue</th><th>per recipient</th></tr>")
    rows = []
    for a in arms:
        lo, hi = a.interval
        eng = "".join(f"<td>{getattr(a, k) if a.name != 'holdout' else '-'}</td>"
                      for k in ENGAGEMENT if k in tracked)
        rows.append(f"<tr><td>{escape(a.name)}</td><td>{a.decided:,}</td>{eng}"
                    f"<td>{a.settled:,}</td><td>{a.converted:,}</td><td>{_pct(a.rate)}</td>"
                    f"<td>{_pct(lo)} to {_pct(hi)}</td><td>{a.revenue:,.2f}</td>"
                    f"<td>{a.per_recipient:,.2f}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _journey(j: Journey, r: Report) -> str:
    parts = [f"<section><h2>{escape(j.trigger)}</h2>"]
    if j.lift is not None:
        parts.append("<h3>Emails against the holdout (per episode)</h3>")
        parts.append(_intervals([j.emails, j.holdout]))
        parts.append(_verdict(j.lift, "emails vs holdout", r.min_sample))
    sent = sum(s.sent for s in j.stages)
    steps = [("decided", sum(s.decided for s in j.stages)), ("sent", sent)]
    for k in ENGAGEMENT:
        if k in r.tracked:
            steps.append((k, sum(getattr(a, k) for s in j.stages for n, a in s.arms.items()
                                 if n != "holdout")))
    steps.append(("converted", sum(a.converted for s in j.stages for n, a in s.arms.items()
                                   if n != "holdout")))
    parts.append("<h3>Funnel (all stages)</h3>" + _funnel(steps))
    for st in j.stages:
        supp = ", ".join(f"{escape(k)} {v:,}" for k, v in sorted(st.suppressed.items()))
        parts.append(f"<h3>Stage {st.stage}</h3><p class=note>{st.decided:,} decided, "
                     f"{st.sent:,} sent, {sum(st.suppressed.values()):,} suppressed"
                     f"{' (' + supp + ')' if supp else ''}</p>")
        arms = list(st.arms.values())
        parts.append(_intervals(arms))
        parts.append(_table(arms, r.tracked))
        for name, c in st.comparisons:
            parts.append(_verdict(c, f"{name} vs {st.control}", r.min_sample))
    parts.append("</section>")
    return "".join(parts)


def render(r: Report, title: str = "Nudge report") -> str:
    body = [f"<section><h1>{escape(title)}</h1><p>{r.orders:,} orders credited to an email "
            f"or a holdout decision (one order, one credit), revenue {r.revenue:,.2f}; "
            f"{r.waiting:,} attribution windows still open.</p>"
            f"<p class=note>A comparison needs at least {r.min_sample} recipients in each arm "
            f"(report.min_sample). {escape(PEEKING)}</p></section>"]
    body.extend(_journey(j, r) for j in r.journeys)
    if r.days:
        body.append("<section><h2>Outcomes over time</h2>" + _timeline(r.days) + "</section>")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f"content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title>"
            f"<style>{CSS}</style></head><body><main>{''.join(body)}</main></body></html>")


def write_html(r: Report, path: Path, config: Any) -> Path:
    """The HTML report; the outbox's index links it when emails go to an outbox."""
    from nudge.delivery.outbox import link_report

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(r), encoding="utf-8")
    if config.delivery.transport == "outbox" and Path(config.delivery.outbox_dir).is_dir():
        link_report(Path(config.delivery.outbox_dir), path)
    return path
