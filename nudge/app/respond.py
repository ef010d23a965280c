"""How the sample's shoppers answer the emails the flow sends them.

The sample generator (nudge/app/sample.py) feeds each customer's events, in time order, to a
Responder, which runs the real per-customer state machine (nudge/state: journeys, caps,
holdouts, experiments) with the demo config, so it knows exactly which emails the flow
will send that customer and when. For each sent email it draws the shopper's answer:
`Email Delivered`, a person's `Email Opened` (and a mail-privacy proxy's machine open for
the customers who use one), `Email Link Clicked`, and an `Order Completed`; the answers
are fed back in, so an order placed after an email ends the journey as it will in the flow.

Rates follow published benchmarks for such flows (Omnisend, Klaviyo: abandoned-cart emails
open ~40%, click ~9.5% and convert more at 1 h than at 24 h; browse abandonment lower;
welcome emails open best), scaled by the shopper's intent: a score of what the features
the propensity model reads show (past orders, recent views, email clicks, cart value). The
organic comeback of an abandoned cart (the holdout's baseline) depends on intent too, so
the model has something to learn and the emails a modest, real lift.

Deterministic: every draw comes from the seeded generator handed in. Nothing else varies:
the flow's decisions for one customer depend on that customer's events and the config only
(the model and recommendations change what an email says, never whether it is sent).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from pathlib import Path
from typing import Any

import orjson

from nudge.core.config import Config, EventsConfig
from nudge.core.records import Decision
from nudge.core.timefmt import MINUTE, SECOND, to_iso
from nudge.flows.contract import Limits, parse_record
from nudge.state.customer import Customer
from nudge.state.features import Context
from nudge.state.program import Program, compile_program
from nudge.state.transitions import Shared, advance, apply, wake

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "data" / "demo.toml"

# (open, click given open, order given click) per journey and stage: stage 1 of the cart
# journey is the 1 h email, stage 2 the 24 h one.
RATES: dict[tuple[str, int], tuple[float, float, float]] = {
    ("cart_abandonment", 1): (0.46, 0.27, 0.32),
    ("cart_abandonment", 2): (0.40, 0.18, 0.22),
    ("browse_abandonment", 1): (0.34, 0.12, 0.20),
    ("welcome", 1): (0.52, 0.14, 0.22),
    ("welcome", 2): (0.40, 0.10, 0.14),
    ("welcome", 3): (0.36, 0.08, 0.12),
    ("post_purchase", 1): (0.40, 0.09, 0.20),
    ("win_back", 1): (0.26, 0.10, 0.25),
    ("win_back", 2): (0.22, 0.08, 0.18),
}
DEFAULT_RATES = (0.30, 0.08, 0.12)
URGENCY = 1.10  # the urgency subject line: a few more opens
DELIVERED = 0.99
PROXY_SHARE = 0.3  # recipients whose mail app fetches every email's images (machine opens)


def program_for(config: Config) -> Program:
    """The decisions' program without what only changes an email's content (the model,
    recommendations): cheaper, and the same sends."""
    return compile_program(dataclasses.replace(
        config, model=dataclasses.replace(config.model, enabled=False),
        recommendations=dataclasses.replace(config.recommendations, enabled=False)))


def demo_program() -> Program:
    from nudge.core.config import load

    return program_for(load(DEMO_CONFIG))


def intent(ctx: Context) -> float:
    """0..1: how ready the shopper is to buy, from what the model can see."""
    score = (-1.6 + 0.9 * min(ctx["orders_365d"], 3) + 0.09 * min(ctx["views_7d"], 25)
             + 0.6 * min(ctx["email_clicks_30d"], 3) + 0.25 * min(ctx["cart_adds_7d"], 6)
             - 0.006 * max(0.0, ctx["cart_value"] - 120))
    return 1 / (1 + math.exp(-score))


class Responder:
    """One customer's events as the flow applies them, and their answers to its emails."""

    def __init__(self, program: Program, customer_id: str, rng: random.Random,
                 catalogue: list[dict[str, Any]]) -> None:
        self.cid = customer_id
        self.catalogue = catalogue
        self.c = Customer()
        self.shared = Shared(program, 0, lambda: 1)
        self.rng = rng
        self.proxy = rng.random() < PROXY_SHARE
        self.limits = Limits.from_config(EventsConfig(), now_ms=2**62)
        self.pending: list[tuple[int, int, dict[str, Any]]] = []  # answers not yet applied
        self.seq = 0
        self.answers: list[tuple[int, dict[str, Any]]] = []  # events to write
        self.ordered_at = 0  # the last order an answer placed (the generator's cart is gone)
        self.ident = ({"anonymousId": customer_id} if customer_id.startswith("anon")
                      else {"userId": customer_id})

    # -- the flow's view -------------------------------------------------------------------

    def event(self, ts: int, ev: dict[str, Any]) -> None:
        """An event the generator writes at `ts` (in time order): answers and timers before
        it first, as the shard orders them."""
        self.until(ts)
        self._apply(ts, ev)

    def until(self, t: int) -> None:
        """Everything before `t`: answers due, and the timers (stages) between them."""
        while self.pending and self.pending[0][0] < t:
            ts, _, ev = heapq.heappop(self.pending)
            self._apply(ts, ev)
            if ev.get("event") == "Order Completed":
                self.ordered_at = ts
        self._fire(t)

    def _apply(self, ts: int, ev: dict[str, Any]) -> None:
        self._fire(ts)
        raw = orjson.dumps({**ev, "timestamp": to_iso(ts), "messageId": "m"})
        apply(self.c, self.cid, parse_record(raw, self.limits), self.shared)
        self._drop_outputs()

    def _fire(self, t: int) -> None:
        """The customer's timers strictly before `t` (events of an instant run first)."""
        while True:
            w = wake(self.c)
            if not w or w >= t:
                return
            out = self.shared.out.decisions
            first = len(out)
            advance(self.c, self.cid, w, self.shared)
            for d in out[first:]:
                if d.outcome == "sent":
                    self._answer(d, Context(self.c, w, self.shared.env))
            self._drop_outputs()
            if wake(self.c) == w:
                return  # nothing left due at w (never loops)

    def _drop_outputs(self) -> None:
        o = self.shared.out
        o.decisions.clear()
        o.segments.clear()
        o.outcomes.clear()

    # -- the shopper -----------------------------------------------------------------------

    def comeback(self, t: int) -> float:
        """The chance an abandoned cart is bought later without any email (the baseline)."""
        self.until(t)
        return 0.03 + 0.25 * intent(Context(self.c, t, self.shared.env))

    def _push(self, ts: int, ev: dict[str, Any]) -> None:
        self.seq += 1
        heapq.heappush(self.pending, (ts, self.seq, ev))
        self.answers.append((ts, ev))

    def _answer(self, d: Decision, ctx: Context) -> None:
        rng = self.rng
        p_open, p_click, p_order = RATES.get((d.trigger, d.stage), DEFAULT_RATES)
        if d.variant == "urgency":
            p_open *= URGENCY
        score = intent(ctx)
        props = {"email_key": f"{self.cid}\x1f{d.trigger}\x1f{d.episode}\x1f{d.stage}",
                 "trigger": d.trigger, "stage": d.stage, "variant": d.variant}
        if rng.random() >= DELIVERED:
            return
        t = d.due + rng.randint(2 * SECOND, 40 * SECOND)
        self._push(t, self._track("Email Delivered", props))
        if self.proxy:
            self._push(t + rng.randint(5 * SECOND, 3 * MINUTE),
                       self._track("Email Opened", {**props, "machine": True}))
        if rng.random() >= min(0.95, p_open * (0.7 + 0.6 * score)):
            return
        t += int(rng.expovariate(1 / (80 * MINUTE))) + MINUTE
        self._push(t, self._track("Email Opened", {**props, "machine": False}))
        if rng.random() >= min(0.9, p_click * (0.55 + 0.9 * score)):
            return
        t += rng.randint(5 * SECOND, 2 * MINUTE)
        self._push(t, self._track("Email Link Clicked", {**props, "machine": False}))
        if rng.random() >= min(0.95, p_order * (0.5 + 1.0 * score)):
            return
        t += rng.randint(2 * MINUTE, 40 * MINUTE)
        self._push(t, self._order(d, rng))

    def _track(self, name: str, props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "track", "event": name, **self.ident, "properties": props}

    def _order(self, d: Decision, rng: random.Random) -> dict[str, Any]:
        products: list[dict[str, Any]]
        if d.trigger == "cart_abandonment" and self.c.cart:
            products = [{"product_id": pid, "name": line.name, "price": line.price,
                         "quantity": line.quantity, "category": line.category,
                         "image_url": line.image_url, "url": line.url}
                        for pid, line in sorted(self.c.cart.items())]
        else:
            products = [{**item, "quantity": 1}
                        for item in rng.sample(self.catalogue, rng.choice([1, 1, 2]))]
        value = round(sum(p["price"] * p["quantity"] for p in products), 2)
        return {"type": "track", "event": "Order Completed", **self.ident,
                "properties": {"order_id": f"o-{rng.randrange(10**9):09d}", "revenue": value,
                               "currency": "EUR", "products": products}}
