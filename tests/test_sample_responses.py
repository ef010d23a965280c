"""The sample's shoppers answer exactly the emails the flow sends them (the generator runs
the same per-customer decisions), deterministically."""

from __future__ import annotations

import orjson

from nudge.app import sample
from nudge.app.respond import DEMO_CONFIG
from nudge.core.config import load
from tests.harness import Pipeline


def _events(seed: int) -> list[bytes]:
    return list(sample.iter_events(customers=150, days=4, seed=seed, respond=True,
                                   duplicate_ratio=0.0))


def test_answers_are_to_emails_the_flow_sends() -> None:
    lines = _events(5)
    assert lines == _events(5)  # deterministic
    p = Pipeline(load(DEMO_CONFIG))
    for i in range(0, len(lines), 500):
        p.feed(lines[i:i + 500])
    p.end()
    sent = {(d.customer_id, d.trigger, d.episode, d.stage) for d in p.decisions
            if d.outcome == "sent"}
    answered: dict[str, set[tuple[str, str, int, int]]] = {}
    for raw in lines:
        ev = orjson.loads(raw)
        if ev.get("event", "").startswith("Email") and "email_key" in ev.get("properties", {}):
            cid, trigger, episode, stage = ev["properties"]["email_key"].split("\x1f")
            answered.setdefault(ev["event"], set()).add((cid, trigger, int(episode),
                                                         int(stage)))
    delivered = answered["Email Delivered"]
    assert delivered <= sent  # never an answer to an email the flow does not send
    assert len(delivered) >= 0.9 * len(sent)  # all but bounces and the period's last hours
    assert answered["Email Opened"] <= delivered
    assert answered["Email Link Clicked"] <= answered["Email Opened"]
    conv = [o for o in p.outcomes if o.outcome == "converted"]
    assert conv, "some answers are orders the flow credits to the email"
