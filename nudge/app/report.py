"""`nudge report`: what the emails earned, per journey, stage and variant, with the
uncertainty a marketer needs to read it.

Reads the decision log and the outcome lines (files, or their Kafka topics, which are
at-least-once: lines are de-duplicated on the decision's key) and builds a Report: per
stage the decisions, suppressions by reason, and per arm (each variant, or "sent", and
"holdout") the funnel (delivered, opened, clicked, where webhooks and tracking report
them), conversions credited by attribution (one order, one credit), revenue, revenue per
recipient and the conversion rate with its 95% Wilson interval; per experiment each variant
against control; per journey its emails against its holdout, counted per episode.

>>> d = [{"customer_id": "a", "trigger": "cart", "episode": 1, "stage": 1,
...       "due": "2026-10-05T11:00:00Z", "outcome": "sent", "reason": None}]
>>> o = [{"customer_id": "a", "trigger": "cart", "episode": 1, "stage": 1,
...       "decided": "2026-10-05T11:00:00Z", "variant": None, "arm": "sent",
...       "outcome": "converted", "at": "2026-10-05T12:00:00Z", "revenue": 40.0}]
>>> r = build(d, o, min_sample=1)
>>> arm = r.journeys[0].stages[0].arms["sent"]
>>> (arm.decided, arm.settled, arm.converted, arm.revenue)
(1, 1, 1, 40.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from nudge.app.stats import PEEKING, Comparison, compare, wilson
from nudge.core.errors import NudgeError
from nudge.core.timefmt import DAY, parse_iso, to_iso

ENGAGEMENT = ("delivered", "opened", "clicked")
SETTLED = ("converted", "not_converted")


@dataclass(slots=True)
class Arm:
    name: str
    decided: int = 0  # sent (or held out) decisions
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    settled: int = 0  # decisions whose attribution window has ended or converted
    converted: int = 0
    revenue: float = 0.0

    @property
    def rate(self) -> float:
        return self.converted / self.settled if self.settled else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.converted, self.settled)

    @property
    def per_recipient(self) -> float:
        return self.revenue / self.settled if self.settled else 0.0


@dataclass(slots=True)
class Stage:
    trigger: str
    stage: int
    decided: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)
    arms: dict[str, Arm] = field(default_factory=dict)
    control: str | None = None  # the experiment's baseline variant
    comparisons: list[tuple[str, Comparison]] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(a.decided for n, a in self.arms.items() if n != "holdout")


@dataclass(slots=True)
class Journey:
    trigger: str
    stages: list[Stage] = field(default_factory=list)
    emails: Arm = field(default_factory=lambda: Arm("emails"))  # per episode
    holdout: Arm = field(default_factory=lambda: Arm("holdout"))
    lift: Comparison | None = None


@dataclass(slots=True)
class Report:
    journeys: list[Journey]
    days: list[tuple[str, int, int, float]]  # (day, sent, conversions credited, revenue)
    min_sample: int
    since: int | None = None
    until: int | None = None
    tracked: tuple[str, ...] = ()  # engagement kinds the data has at all
    orders: int = 0  # conversions credited (one per order)
    revenue: float = 0.0
    waiting: int = 0  # sent or holdout decisions whose window is still open

    def arm_rows(self) -> Iterator[tuple[Journey, Stage, Arm]]:
        for j in self.journeys:
            for s in j.stages:
                for a in s.arms.values():
                    yield j, s, a


# -- reading ------------------------------------------------------------------------------


def read_lines(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return
    with p.open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)


def read_source(target: str, topic: str, config: Any, config_key: str) -> Iterator[dict[str, Any]]:
    """The lines of an output: a file, or (target "kafka") its topic read to its end now."""
    if target == "kafka":
        from nudge.kafka.source import read_topic

        for rec in read_topic(config.kafka, topic, config_key=config_key):
            yield orjson.loads(rec.value)
    elif target:
        yield from read_lines(target)


def _ms(value: Any) -> int:
    return parse_iso(value) if isinstance(value, str) else int(value or 0)


# -- building -------------------------------------------------------------------------------


def build(decisions: Iterable[dict[str, Any]], outcomes: Iterable[dict[str, Any]], *,
          min_sample: int, since: int | None = None, until: int | None = None) -> Report:
    """Decisions due in [since, until) and the outcomes of those decisions."""
    decided: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    for d in decisions:
        key = (d["customer_id"], d["trigger"], d["episode"], d["stage"])
        due = _ms(d["due"])
        if key in decided or (since is not None and due < since) or \
                (until is not None and due >= until):
            continue
        decided[key] = dict(d, due=due)
    settled: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    engaged: set[tuple[str, str, int, int, str]] = set()
    for o in outcomes:
        key = (o["customer_id"], o["trigger"], o["episode"], o["stage"])
        if key not in decided:
            continue
        kind = o["outcome"]
        if kind in SETTLED:
            settled.setdefault(key, o)
        elif kind in ENGAGEMENT and decided[key]["outcome"] == "sent":
            engaged.add((*key, kind))

    stages: dict[tuple[str, int], Stage] = {}
    episodes: dict[tuple[str, str, int], list[tuple[str, dict[str, Any] | None]]] = {}
    days: dict[int, list[float]] = {}
    report = Report([], [], min_sample, since, until,
                    tuple(k for k in ENGAGEMENT if any(e[4] == k for e in engaged)))
    for key, d in sorted(decided.items(), key=lambda kv: (kv[1]["due"], kv[0])):
        st = stages.get((key[1], key[3]))
        if st is None:
            st = stages[(key[1], key[3])] = Stage(key[1], key[3])
        st.decided += 1
        if d["outcome"] == "suppressed":
            reason = d.get("reason") or "-"
            st.suppressed[reason] = st.suppressed.get(reason, 0) + 1
            continue
        name = "holdout" if d["outcome"] == "holdout" else d.get("variant") or "sent"
        arm = st.arms.get(name)
        if arm is None:
            arm = st.arms[name] = Arm(name)
        arm.decided += 1
        for kind in ENGAGEMENT:
            if (*key, kind) in engaged:
                setattr(arm, kind, getattr(arm, kind) + 1)
        res = settled.get(key)
        episodes.setdefault(key[:3], []).append((name, res))
        day = days.setdefault(d["due"] // DAY, [0, 0, 0.0])
        if name != "holdout":
            day[0] += 1
        if res is None:
            report.waiting += 1
            continue
        arm.settled += 1
        if res["outcome"] == "converted":
            arm.converted += 1
            arm.revenue += float(res.get("revenue") or 0.0)
            report.orders += 1
            report.revenue += float(res.get("revenue") or 0.0)
            cday = days.setdefault(_ms(res["at"]) // DAY, [0, 0, 0.0])
            cday[1] += 1
            cday[2] += float(res.get("revenue") or 0.0)

    journeys: dict[str, Journey] = {}
    for st in stages.values():  # variants by name (control first), then "sent", the holdout
        st.arms = dict(sorted(st.arms.items(), key=lambda kv: (
            kv[0] == "holdout", kv[0] == "sent", kv[0] != "control", kv[0])))
    for (trigger, _), st in sorted(stages.items()):
        journeys.setdefault(trigger, Journey(trigger)).stages.append(st)
        _experiment(st, min_sample)
    for (_, trigger, _), parts in episodes.items():
        j = journeys[trigger]
        arm = j.holdout if any(n == "holdout" for n, _ in parts) else j.emails
        arm.decided += 1
        if all(o is not None for _, o in parts):
            arm.settled += 1
            conv = [o for _, o in parts if o is not None and o["outcome"] == "converted"]
            if conv:
                arm.converted += 1
                arm.revenue += sum(float(o.get("revenue") or 0.0) for o in conv)
    for j in journeys.values():
        if j.holdout.decided:
            j.lift = compare(j.holdout.converted, j.holdout.settled, j.emails.converted,
                             j.emails.settled, min_sample=min_sample)
    report.journeys = [journeys[t] for t in sorted(journeys)]
    report.days = [(to_iso(day * DAY)[:10], int(v[0]), int(v[1]), round(v[2], 2))
                   for day, v in sorted(days.items())]
    return report


def _experiment(st: Stage, min_sample: int) -> None:
    variants = sorted(n for n in st.arms if n not in ("holdout", "sent"))
    if len(variants) < 2:
        return
    st.control = "control" if "control" in variants else variants[0]
    base = st.arms[st.control]
    for name in variants:
        if name != st.control:
            a = st.arms[name]
            st.comparisons.append((name, compare(base.converted, base.settled, a.converted,
                                                 a.settled, min_sample=min_sample)))


# -- text -------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def verdict(c: Comparison, min_sample: int) -> str:
    """What a comparison allows one to say."""
    if not c.enough:
        return f"not enough data (under {min_sample} in an arm)"
    if c.p_value < 0.05:
        return "significant at 5%"
    return f"not significant (each arm needs ~{c.needed} for a 20% lift)" if c.needed \
        else "not significant"


def _verdict(c: Comparison, what: str, min_sample: int) -> str:
    lift = f"{c.lift:+.0%}" if c.lift is not None else "n/a"
    return (f"{what}: {_pct(c.rate_b)} vs {_pct(c.rate_a)}, {100 * c.diff:+.1f} pp "
            f"({lift}), p = {c.p_value:.2f}, P(better) = {c.prob_beat:.0%} -- "
            f"{verdict(c, min_sample)}")


def format_text(r: Report, *, short: bool = False) -> str:
    lines: list[str] = []
    span = ""
    if r.since is not None or r.until is not None:
        span = (f" (decisions due {to_iso(r.since)[:16] if r.since is not None else '...'}"
                f" to {to_iso(r.until)[:16] if r.until is not None else '...'})")
    lines.append(f"report{span}: {r.orders} orders credited to a decision, revenue "
                 f"{r.revenue:,.2f} (one order, one credit); {r.waiting} windows still open")
    for j in r.journeys:
        lo, hi = j.emails.interval
        lines.append(f"{j.trigger}: {j.emails.settled} episodes settled, {_pct(j.emails.rate)} "
                     f"converted [{_pct(lo)}, {_pct(hi)}], revenue {j.emails.revenue:,.2f}"
                     f"{'' if j.lift is not None else ' (no holdout)'}")
        if j.lift is not None:
            lines.append("  " + _verdict(j.lift, f"emails vs holdout (episodes: "
                                                  f"{j.emails.settled} vs {j.holdout.settled})",
                                         r.min_sample))
        for st in j.stages:
            if not short:
                supp = ", ".join(f"{k} {v}" for k, v in sorted(st.suppressed.items()))
                lines.append(f"  stage {st.stage}: decided {st.decided}, sent {st.sent}, "
                             f"holdout {st.arms['holdout'].decided if 'holdout' in st.arms else 0}"
                             f", suppressed {sum(st.suppressed.values())}"
                             f"{' (' + supp + ')' if supp else ''}")
                lines.append("    arm            sent deliv  open click settled  conv   rate"
                             "  95% CI            revenue  per recip.")
                for a in st.arms.values():
                    lo, hi = a.interval
                    eng = [str(getattr(a, k)) if k in r.tracked and a.name != "holdout"
                           else "-" for k in ENGAGEMENT]
                    lines.append(f"    {a.name[:12]:<12} {a.decided:>6} {eng[0]:>5} "
                                 f"{eng[1]:>5} {eng[2]:>5} {a.settled:>7} {a.converted:>5} "
                                 f"{_pct(a.rate):>6}  [{_pct(lo):>6}, {_pct(hi):>6}] "
                                 f"{a.revenue:>10,.2f} {a.per_recipient:>10,.2f}")
            for name, c in st.comparisons:
                lines.append(f"  stage {st.stage} " + _verdict(
                    c, f"{name} vs {st.control} ({c.n_b} vs {c.n_a})", r.min_sample))
    if any(j.lift is not None or any(s.comparisons for s in j.stages) for j in r.journeys):
        lines.append(f"minimum sample: {r.min_sample} per arm (report.min_sample). " + PEEKING)
    return "\n".join(lines)


# -- the command -----------------------------------------------------------------------------


def when(text: str | None, flag: str) -> int | None:
    """--since/--until: an ISO-8601 time or a date (UTC midnight).

    >>> when("2026-10-05", "--since") == when("2026-10-05T00:00:00Z", "--since")
    True
    """
    if text is None:
        return None
    try:
        return parse_iso(text + "T00:00:00Z" if len(text) == 10 else text)
    except ValueError:
        raise NudgeError(f"{flag} {text!r}: not an ISO-8601 time or a date "
                         "(e.g. 2026-10-05 or 2026-10-05T12:00:00Z)") from None


def from_config(config: Any, *, since: int | None = None, until: int | None = None,
                decisions: str | None = None, outcomes: str | None = None) -> Report:
    """The report of a config's outputs: its files, or its topics for outputs set to kafka."""
    d_target = decisions or config.outputs.decisions
    o_target = outcomes or config.outputs.outcomes
    if d_target != "kafka" and not Path(d_target).exists():
        raise NudgeError(f"config outputs.decisions: {d_target} does not exist (run the flow "
                         "first, or pass --decisions)")
    return build(
        read_source(d_target, config.kafka.decisions_topic, config, "kafka.decisions_topic"),
        read_source(o_target, config.kafka.outcomes_topic, config, "kafka.outcomes_topic"),
        min_sample=config.report.min_sample, since=since, until=until)

