"""Journeys as pure transitions on a Customer, for every trigger of the config.

A journey (nudge/state/program.py, from [triggers.*]) opens an episode on its entry event (or on
entering a segment), if its re-entry policy allows: `once` (never again), `after_exit`
(when no episode is open) or `cooldown` (that long after the last episode closed). Events
in `restart_on` move the episode's anchor; stage k is due `delay[k]` after the anchor and
is reached when event time passes it with the episode open. Events in `exit_on`, the
`exit_if` condition after an event, or leaving the entry segment close the episode without
an email. An episode waiting for `min_entries` entry events is armed when they arrived;
if the first stage's delay passes first, it closes quietly. Cart abandonment is one such
definition (nudge/data/presets.toml); its README semantics hold word for word.

Reaching a stage decides, in this order: consent, then an address, then quiet hours
(defer to their end, or suppress), then the frequency cap across all journeys, then the
journey's holdout; what is left is sent, with the variant of the stage's experiment.
"""

from __future__ import annotations

from nudge.core.events import Event, Product
from nudge.core.records import (
    OUTCOME_HOLDOUT,
    OUTCOME_SENT,
    OUTCOME_SUPPRESSED,
    Decision,
    EmailContext,
    Incentive,
)
from nudge.scoring.experiments import in_holdout, pick_variant
from nudge.state.customer import Customer, cart_value, note_decision
from nudge.state.features import Context, Env, preferred_categories
from nudge.state.parts import DecisionNote, JourneyState
from nudge.state.policy import FREQUENCY_CAP, QUIET_HOURS, capped, consent_block, quiet_until
from nudge.state.program import Journey, Program


def _may_enter(st: JourneyState | None, j: Journey, ts: int) -> bool:
    if st is None:
        return True
    if st.open or j.reentry == "once":
        return False
    return j.reentry == "after_exit" or ts - st.last_exit >= j.cooldown


def _open(c: Customer, j: Journey, ts: int) -> JourneyState:
    st = c.journeys.get(j.name)
    st = c.journeys[j.name] = JourneyState(
        anchor=ts, deferred=False, due=0, entries=1, episode=st.episode + 1 if st else 1,
        last_entry=ts, last_exit=st.last_exit if st else 0, next_stage=0, open=True)
    _schedule(st, j)
    return st


def _schedule(st: JourneyState, j: Journey) -> None:
    # Unarmed episodes are due when the first delay passes: then they close quietly.
    st.due = st.anchor + j.stages[st.next_stage if st.entries >= j.min_entries else 0].delay
    st.deferred = False


def _close(st: JourneyState, ts: int) -> None:
    st.open = False
    st.due = 0
    st.deferred = False
    st.last_exit = ts


def close(st: JourneyState, ts: int) -> None:
    """Close an episode without a decision (an anonymous record whose history moved)."""
    _close(st, ts)


def on_event(c: Customer, ev: Event, env: Env, program: Program) -> bool:
    """Move the journeys for an event whose facts are applied. True if a due time may have
    come earlier (the shard then reschedules the customer)."""
    moved = False
    kind, ts = ev.kind, ev.ts
    ctx: Context | None = None  # features, built only if a condition needs them
    for j in program.by_kind.get(kind, ()):
        st = c.journeys.get(j.name)
        if st is not None and st.open:
            if kind in j.exit_kinds:
                _close(st, ts)
                continue
            if kind in j.restart_kinds:
                st.anchor = max(st.anchor, ts)
                if kind == j.entry_kind:
                    if j.where is not None and ctx is None:
                        ctx = Context(c, ts, env)
                    if _passes(j, ctx, ev):
                        st.entries += 1
                _schedule(st, j)
                moved = True
        elif kind == j.entry_kind and _may_enter(st, j, ts):
            if j.where is not None and ctx is None:
                ctx = Context(c, ts, env)
            if _passes(j, ctx, ev):
                _open(c, j, ts)
                moved = True
    for j in program.with_exit_if:
        if j.exit_if_kinds is not None and kind not in j.exit_if_kinds:
            continue  # nothing it reads has changed since it was last found false
        st = c.journeys.get(j.name)
        if st is not None and st.open:
            if ctx is None:
                ctx = Context(c, ts, env)
            if j.exit_if.test(ctx):  # type: ignore[union-attr]
                _close(st, ts)
    return moved


def _passes(j: Journey, ctx: Context | None, ev: Event) -> bool:
    if j.where is None or ctx is None:
        return True
    ctx.cache["event"] = ev
    try:
        return j.where.test(ctx)
    finally:
        del ctx.cache["event"]


def on_segments(c: Customer, entered: list[str], exited: list[str], t: int,
                program: Program) -> None:
    """Segment-entry journeys open when their segment is entered and close when it is left."""
    for name in exited:
        for j in program.by_segment.get(name, ()):
            st = c.journeys.get(j.name)
            if st is not None and st.open:
                _close(st, t)
    for name in entered:
        for j in program.by_segment.get(name, ()):
            if _may_enter(c.journeys.get(j.name), j, t):
                _open(c, j, t)


def next_due(c: Customer) -> int:
    """The earliest due time of any open episode (0: none)."""
    first = 0
    for st in c.journeys.values():
        if st.open and st.due and (not first or st.due < first):
            first = st.due
    return first


def email_context(c: Customer, ctx: Context) -> EmailContext:
    lines = tuple(Product(pid, line.name, line.price, line.quantity, line.category,
                          line.image_url, line.url) for pid, line in c.cart.items())
    prefs = preferred_categories(ctx, 1)
    return EmailContext(c.email or "", c.first_name, c.last_name, c.timezone, lines,
                        cart_value(c), tuple(reversed(c.recent)), tuple(reversed(c.bought)),
                        prefs[0] if prefs else None, tuple(c.segments), ctx["lifecycle"])


def reach(c: Customer, cid: str, t: int, ctx: Context, program: Program,
          out: list[Decision]) -> None:
    """Reach every stage due at or before `t`, journey by journey in config order."""
    for j in program.journeys:
        st = c.journeys.get(j.name)
        while st is not None and st.open and st.due and st.due <= t:
            if st.entries < j.min_entries:
                _close(st, st.due)  # never armed: the window for more entries passed
                break
            _reach_stage(c, cid, st, j, ctx, program, out)


def _reach_stage(c: Customer, cid: str, st: JourneyState, j: Journey, ctx: Context,
                 program: Program, out: list[Decision]) -> None:
    due = st.due
    index = st.next_stage
    stage = j.stages[index]
    reason = consent_block(c, j.name)
    quiet = program.quiet
    if reason is None and j.quiet_hours and quiet.enabled and not st.deferred:
        end = quiet_until(due, c.timezone or quiet.default_timezone, quiet)
        if end is not None:
            if quiet.action == "defer":
                st.due = end
                st.deferred = True
                return
            reason = QUIET_HOURS
    if reason is None and capped(c, due, program.caps):
        reason = FREQUENCY_CAP
    variant: str | None = None
    template, subject = stage.template, ""
    if stage.variants:
        experiment = stage.experiment or f"{j.name}.stage{index + 1}"
        variant = pick_variant(cid, experiment, [(v.name, v.weight) for v in stage.variants])
        chosen = next(v for v in stage.variants if v.name == variant)
        template, subject = chosen.template or template, chosen.subject
    if reason is not None:
        outcome = OUTCOME_SUPPRESSED
    elif j.holdout and in_holdout(cid, j.name, j.holdout):
        outcome = OUTCOME_HOLDOUT
    else:
        outcome = OUTCOME_SENT
    if outcome == OUTCOME_SENT:
        c.sends = [*c.sends, due]
        incentive = None
        if j.incentive and program.incentive is not None and program.incentive.test(ctx):
            incentive = Incentive(program.model.incentive_text, program.model.incentive_code)
        decision = Decision(cid, j.name, st.episode, index + 1, due, outcome, None,
                            email_context(c, ctx), variant, template, subject,
                            ctx["propensity"] if program.model.enabled else None, incentive)
    else:
        decision = Decision(cid, j.name, st.episode, index + 1, due, outcome, reason,
                            variant=variant, template=template, subject=subject)
    out.append(decision)
    note_decision(c, DecisionNote(due=due, episode=st.episode, outcome=outcome, reason=reason,
                                  stage=index + 1, trigger=j.name, variant=variant))
    st.next_stage = index + 1
    if st.next_stage < len(j.stages):
        _schedule(st, j)
        st.due = max(st.due, due)  # a long deferral may have overtaken the next stage
    else:
        _close(st, due)
