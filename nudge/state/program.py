"""The config compiled for the shards: journeys with their event kinds and rules, segment
rules, and the send policy. Built once at start-up; a bad config fails here with the key
path and the reason (`nudge check --config C` runs just this).

>>> from nudge.core.config import load_text
>>> program = compile_program(load_text('[triggers.welcome]\\nenabled = true'))
>>> [j.name for j in program.journeys]
['cart_abandonment', 'welcome']
>>> try:
...     compile_program(load_text('[triggers.win_back]\\nenabled = true'))
... except ConfigError as exc:
...     print(exc.path, "|", exc.reason)
triggers.win_back.entry | segment 'lapsed' is not defined (add [segments.lapsed] with a rule)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nudge.core.config import CapsConfig, Config, QuietHoursConfig
from nudge.core.errors import ConfigError
from nudge.core.events import TRACK_NAMES, Kind
from nudge.core.journeyconfig import FeaturesConfig, ModelConfig, StageConfig, TriggerConfig
from nudge.state.features import changed_by
from nudge.state.rules import Rule, compile_rule

EVENT_KINDS = {**TRACK_NAMES, "identify": Kind.IDENTIFY}


@dataclass(frozen=True, slots=True)
class Journey:
    name: str
    entry_kind: int | None  # None: entered by a segment
    entry_segment: str | None
    where: Rule | None
    min_entries: int
    restart_kinds: frozenset[int]
    exit_kinds: frozenset[int]
    exit_if: Rule | None
    # the kinds after which exit_if may have turned true (None: after any event): it reads
    # only features that other kinds leave as they were, and it was checked at the opening
    exit_if_kinds: frozenset[int] | None
    reentry: str
    cooldown: int
    stages: tuple[StageConfig, ...]
    holdout: float
    quiet_hours: bool
    incentive: bool


@dataclass(frozen=True, slots=True)
class Program:
    journeys: tuple[Journey, ...]
    segments: tuple[tuple[str, Rule], ...]
    caps: CapsConfig
    quiet: QuietHoursConfig
    features: FeaturesConfig
    model: ModelConfig
    incentive: Rule | None
    recommendations: bool
    dedup_window: int
    by_segment: dict[str, tuple[Journey, ...]] = field(default_factory=dict)
    # per event kind, the journeys it may open, restart or end (in config order); an event
    # of another kind only meets the journeys with an `exit_if`, and only while open
    by_kind: dict[int, tuple[Journey, ...]] = field(default_factory=dict)
    with_exit_if: tuple[Journey, ...] = ()
    # the event kinds journeys.on_event has anything to do for (None: every kind)
    journey_kinds: frozenset[int] | None = None
    ranked: bool = True  # some rule reads an engagement percentile (nudge/state/engagement.py)
    attribution: str = "last_touch"  # attribution.model (nudge/state/attribution.py)


_RANKED = frozenset({"engagement_percentile", "engagement_tier"})


def _kind(name: str, where: str) -> int:
    kind = EVENT_KINDS.get(name)
    if kind is None:
        known = ", ".join(sorted(n for n in EVENT_KINDS if n[0].isupper() or n == "identify"))
        raise ConfigError(where, f"unknown event {name!r} (events: {known})")
    return kind


def _journey(t: TriggerConfig, segments: set[str]) -> Journey:
    where = f"triggers.{t.name}"
    segment = t.entry_segment
    if segment is not None and segment not in segments:
        raise ConfigError(f"{where}.entry", f"segment {segment!r} is not defined "
                                            f"(add [segments.{segment}] with a rule)")
    entry_kind = None if segment is not None else _kind(t.entry, f"{where}.entry")
    exit_if = compile_rule(t.exit_if, f"{where}.exit_if") if t.exit_if else None
    exit_if_kinds = None
    # Only for event entries: the opening event's own check (journeys.on_event) is then
    # the first; a segment entry opens in advance(), with no check until the next event.
    if exit_if is not None and entry_kind is not None:
        kinds = changed_by(exit_if.features)
        if kinds is not None:
            exit_if_kinds = kinds | {entry_kind}
    return Journey(
        name=t.name,
        entry_kind=entry_kind,
        entry_segment=segment,
        where=compile_rule(t.where, f"{where}.where", event_fields=True) if t.where else None,
        min_entries=t.min_entries,
        restart_kinds=frozenset(_kind(n, f"{where}.restart_on") for n in t.restart_on),
        exit_kinds=frozenset(_kind(n, f"{where}.exit_on") for n in t.exit_on),
        exit_if=exit_if,
        exit_if_kinds=exit_if_kinds,
        reentry=t.reentry,
        cooldown=t.cooldown,
        stages=t.stages,
        holdout=t.holdout,
        quiet_hours=t.quiet_hours,
        incentive=t.incentive,
    )


def compile_program(config: Config) -> Program:
    segments = tuple((s.name, compile_rule(s.rule, f"segments.{s.name}.rule"))
                     for s in config.segments)
    names = {name for name, _ in segments}
    journeys = tuple(_journey(t, names) for t in config.journeys)
    by_segment: dict[str, list[Journey]] = {}
    for j in journeys:
        if j.entry_segment is not None:
            by_segment.setdefault(j.entry_segment, []).append(j)
    by_kind: dict[int, list[Journey]] = {}
    for j in journeys:
        for kind in {j.entry_kind, *j.restart_kinds, *j.exit_kinds} - {None}:
            by_kind.setdefault(kind, []).append(j)  # type: ignore[arg-type]
    journey_kinds: frozenset[int] | None = frozenset(by_kind)
    for j in journeys:
        if j.exit_if is not None:
            journey_kinds = None if j.exit_if_kinds is None or journey_kinds is None \
                else journey_kinds | j.exit_if_kinds
    model = config.model
    incentive = compile_rule(model.incentive_if, "model.incentive_if") \
        if model.incentive_if else None
    rules = [r for _, r in segments] + [r for j in journeys for r in (j.where, j.exit_if)
                                        if r is not None]
    if incentive is not None:
        rules.append(incentive)
    return Program(
        journeys=journeys,
        segments=segments,
        caps=config.caps,
        quiet=config.quiet_hours,
        features=config.features,
        model=model,
        incentive=incentive,
        recommendations=config.recommending,
        dedup_window=config.events.dedup_window,
        by_segment={k: tuple(v) for k, v in by_segment.items()},
        by_kind={k: tuple(v) for k, v in by_kind.items()},
        with_exit_if=tuple(j for j in journeys if j.exit_if is not None),
        journey_kinds=journey_kinds,
        ranked=any(f in _RANKED for rule in rules for f in rule.features),
        attribution=config.attribution.model,
    )
