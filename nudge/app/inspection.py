"""`nudge inspect` and `nudge model report`: read the profile view the flow keeps current.

A customer's entry is their last committed record; features, segments, scores and pending
stages are computed from it here with the same pure functions the shards use, at the
record's last event time (or `--at`), against the state its shard shared at that commit
(the propensity model, the engagement ranks).
"""

from __future__ import annotations

from typing import Any

from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.ids import shard_of
from nudge.core.timefmt import to_iso
from nudge.scoring.propensity import ProgressiveMetrics, PropensityModel
from nudge.state import journeys
from nudge.state.customer import decode
from nudge.state.engagement import EngagementRanks
from nudge.state.features import Context, Env, model_inputs, snapshot
from nudge.state.profiles import ProfileStore
from nudge.state.program import compile_program


def _iso(ms: int) -> str | None:
    return to_iso(ms) if ms else None


def profile(config: Config, customer_id: str, at: int | None = None) -> dict[str, Any]:
    """Everything the view knows about one customer, as plain data."""
    program = compile_program(config)
    store = ProfileStore(config.outputs.profiles, read_only=True)
    try:
        raw = store.get(customer_id)
        if raw is None:
            raise NudgeError(f"customer not found in the profile view {store.path} (the view "
                             "trails the flow by one snapshot interval)")
        shared = store.shard_state(shard_of(customer_id, config.shards)) or {}
    finally:
        store.close()
    c = decode(raw)
    ranks = EngagementRanks(shared.get("engagement"))
    population = int(shared.get("population", 1))
    model: PropensityModel | None = None
    if program.model.enabled and shared.get("model") is not None:
        model = PropensityModel(learning_rate=program.model.learning_rate, l2=program.model.l2,
                                prior=program.model.prior)
        model.restore(shared["model"])
    env = Env(program.features, lambda cust: ranks.percentile(cust.engagement, population),
              lambda ctx: model.score(model_inputs(ctx)) if model is not None else 0.0)
    t = at if at is not None else c.last_seen
    ctx = Context(c, t, env)
    pending = []
    for j in program.journeys:
        st = c.journeys.get(j.name)
        if st is not None and st[journeys.OPEN]:
            pending.append({"trigger": j.name, "episode": st[journeys.EPISODE],
                            "stage": st[journeys.NEXT] + 1, "due": _iso(st[journeys.DUE]),
                            "armed": st[journeys.ENTRIES] >= j.min_entries,
                            "deferred": bool(st[journeys.DEFERRED])})
    return {
        "customer_id": customer_id,
        "as_of": to_iso(t),
        "profile": {"email": c.email, "first_name": c.first_name, "last_name": c.last_name,
                    "timezone": c.timezone, "marketing_consent": c.consent,
                    "first_seen": _iso(c.first_seen), "last_seen": _iso(c.last_seen)},
        "features": snapshot(ctx),
        "segments": list(c.segments),
        "scores": {"propensity": ctx["propensity"], "engagement_tier": ctx["engagement_tier"],
                   "churn_risk": ctx["overdue_ratio"]},
        "pending_stages": pending,
        "next_segment_evaluation": _iso(min(x for x in (c.seg_due, c.seg_next) if x)
                                        if c.seg_due or c.seg_next else 0),
        "recent_decisions": [
            {"trigger": d[0], "episode": d[1], "stage": d[2], "due": to_iso(d[3]),
             "outcome": d[4], "reason": d[5], "variant": d[6]} for d in reversed(c.decisions)],
        "awaiting_attribution": len(c.outcomes),
    }


def model_report(config: Config) -> dict[str, Any]:
    """Progressive validation of the shards' propensity models, summed over the shards."""
    store = ProfileStore(config.outputs.profiles, read_only=True)
    try:
        states = list(store.shard_states())
    finally:
        store.close()
    total = ProgressiveMetrics()
    shards = 0
    for _, state in states:
        if state.get("model") is None:
            continue
        model = PropensityModel()
        model.restore(state["model"])
        total = total + model.metrics
        shards += 1
    if not shards:
        raise NudgeError("no model state in the profile view (is [model] enabled, and has the "
                         "flow committed a snapshot?)")
    return {"shards": shards, "count": total.count, "positives": total.positives,
            "auc": total.auc, "log_loss": total.log_loss,
            "prior_log_loss": total.prior_log_loss}


def format_model_report(r: dict[str, Any]) -> str:
    def num(x: float | None, digits: int) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    return (f"propensity model, progressive validation over {r['shards']} shards: "
            f"{r['count']:,} examples ({r['positives']:,} converted), ROC AUC "
            f"{num(r['auc'], 3)}, log loss {num(r['log_loss'], 4)} (base rate alone: "
            f"{num(r['prior_log_loss'], 4)})")
