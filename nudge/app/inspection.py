"""`nudge inspect` and `nudge model report`: read the profile view the flow keeps current.

A customer's entry is their last committed record; features, segments, scores and pending
stages are computed from it here with the same pure functions the shards use, at the
record's last event time (or `--at`), against the state its shard shared at that commit
(the propensity model, the engagement ranks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.ids import shard_of
from nudge.core.timefmt import to_iso
from nudge.scoring.propensity import ProgressiveMetrics, PropensityModel
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
                                prior=program.model.prior, resume=shared["model"])
    env = Env(program.features, lambda cust: ranks.percentile(cust.engagement, population),
              lambda ctx: model.score(model_inputs(ctx)) if model is not None else 0.0)
    t = at if at is not None else c.last_seen
    ctx = Context(c, t, env)
    pending = []
    for j in program.journeys:
        st = c.journeys.get(j.name)
        if st is not None and st.open:
            pending.append({"trigger": j.name, "episode": st.episode,
                            "stage": st.next_stage + 1, "due": _iso(st.due),
                            "armed": st.entries >= j.min_entries, "deferred": st.deferred})
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
            {"trigger": d.trigger, "episode": d.episode, "stage": d.stage, "due": to_iso(d.due),
             "outcome": d.outcome, "reason": d.reason, "variant": d.variant}
            for d in reversed(c.decisions)],
        "awaiting_attribution": len(c.outcomes),
        "identity": identity(customer_id, c),
    }


def identity(customer_id: str, c: Any) -> dict[str, Any]:
    """The customer's namespace, linked anonymous ids, and where each part of the history
    came from (nudge/state/identity_records.py keeps it)."""
    from nudge.core.ids import is_anonymous_key
    from nudge.state import identity_records as ir

    brought: dict[str, str] = {}
    links = []
    for entry in c.links:
        x = entry[ir.ANON]
        for pid in entry[ir.CART]:
            brought[pid] = x
        links.append({
            "anonymous_id": x,
            "linked_at": _iso(entry[ir.LINKED_AT]),  # None: linked before this record
            "merged_events": dict(entry[ir.KINDS]),
            "history_from": _iso(entry[ir.FIRST]) if entry[ir.KINDS] else None,
            "history_to": _iso(entry[ir.LAST]) if entry[ir.KINDS] else None,
            "cart_lines_brought": list(entry[ir.CART]),
            "events_after_link": entry[ir.LATER]})
    own = "its anonymous session" if is_anonymous_key(customer_id) else "the customer's own events"
    return {
        "namespace": "anonymous" if is_anonymous_key(customer_id) else "user",
        "linked_anonymous_ids": links,
        "cart": [{"product_id": pid, "quantity": line.quantity, "price": line.price,
                  "from": f"anonymous id {brought[pid]}" if pid in brought else own}
                 for pid, line in c.cart.items()],
    }


def merged_carts(config: Config, decisions: Path) -> str | None:
    """A line for the demo: cart emails sent to customers whose cart started anonymous."""
    import orjson

    sent: dict[str, int] = {}
    if not decisions.exists() or not config.outputs.profiles:
        return None
    with decisions.open("rb") as f:
        for line in f:
            d = orjson.loads(line)
            if d["outcome"] == "sent" and d["trigger"] == "cart_abandonment":
                sent[d["customer_id"]] = sent.get(d["customer_id"], 0) + 1
    store = ProfileStore(config.outputs.profiles, read_only=True)
    linked, recovered, emails = 0, [], 0
    try:
        for cid, n in sorted(sent.items()):
            raw = store.get(cid)
            c = decode(raw) if raw is not None else None
            if c is not None and c.links:
                linked += 1
                if any(entry[5] for entry in c.links):
                    recovered.append(cid)
                    emails += n
    finally:
        store.close()
    if not linked:
        return None
    example = f" (e.g. nudge inspect {recovered[0]})" if recovered else ""
    return (f"identity: {len(recovered)} shoppers whose cart started anonymous got {emails} "
            f"cart emails after logging in{example}")


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
        model = PropensityModel(resume=state["model"])
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
