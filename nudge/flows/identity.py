"""The identity steps for Bytewax: links (keyed by user) and identity (keyed by anonymous id).

All logic is in nudge/state/links.py and nudge/state/identity.py (pure, tested without
Bytewax); these hold one shard per key, count, and make `snapshot()` the commit point.

    links     in:  (links key, ShardChunk)     out: (identity key | shard key, ShardChunk),
                                                    ("dead", DeadLetter)
    identity  in:  (identity key, ShardChunk)  out: (shard key, ShardChunk), ("dead", ...)
"""

from __future__ import annotations

from functools import partial
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.operators import StatefulBatchLogic

from nudge.core import metrics
from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.records import ShardChunk
from nudge.state.identity import IdentityShard
from nudge.state.links import Fanout, IdentityStage, LinkShard


def _unwrap(item: tuple[str, Any]) -> Any:
    return item[1]  # stateful steps emit (their key, item); the items carry their own keys


def _to(prefix: str) -> Any:
    return lambda item: item[0].startswith(prefix)


def identity_steps(config: Config, routed: Stream[Any]) -> tuple[Stream[Any], Stream[Any]]:
    """Insert the identity steps after route: (what the customers step reads, the identity
    dead letters). Without identity, route's output as it is and no dead letters."""
    if not config.identity.enabled:
        return routed, op.filter_map("identity_off", routed, lambda item: None)
    split = op.branch("to_identity_steps", routed, lambda item: not item[0].startswith("shard-"))
    # (links key | identity key, ShardChunk)
    linked = op.map("links_out", op.stateful_batch(
        "links", op.filter("to_links", split.trues, _to("links-")), partial(LinksLogic, config)),
        _unwrap)
    # (identity key | shard key, ShardChunk), ("dead", DeadLetter)
    resolved = op.map("identity_out", op.stateful_batch("identity", op.merge(
        "identity_in", op.filter("to_identity", split.trues, _to("identity-")),
        op.filter("links_to_identity", linked, _to("identity-"))), partial(IdentityLogic, config)),
        _unwrap)
    # (shard key, ShardChunk), ("dead", DeadLetter)
    customers_in = op.merge("customers_in", split.falses,
                            op.filter("identity_to_customers", resolved, _to("shard-")))
    dead = op.filter_map("identity_dead_letters", op.merge("identity_both", linked, resolved),
                         lambda item: item[1] if item[0] == "dead" else None)
    return customers_in, dead


def fanout(config: Config) -> Fanout:
    n = config.identity.shards
    return Fanout(config.shards, n, n)


def _count(out: list[tuple[str, Any]], before: dict[str, int], after: dict[str, int]) -> None:
    for key, n in after.items():
        if n != before.get(key, 0):
            metrics.IDENTITY.labels(key).inc(n - before.get(key, 0))
    for _, item in out:
        if type(item) is DeadLetter:
            metrics.DEAD_LETTERS.labels(item.stage, item.reason).inc()


class _StageLogic(StatefulBatchLogic[ShardChunk, Any, dict[str, Any]]):
    """One links or identity shard: all its logic in nudge/state/, counted here."""

    def __init__(self, shard: IdentityStage) -> None:
        self.shard = shard

    def on_batch(self, values: list[ShardChunk]) -> tuple[list[Any], bool]:
        before = dict(self.shard.stats)
        out = self.shard.process(values)
        _count(out, before, self.shard.stats)
        return out, False

    def snapshot(self) -> dict[str, Any]:
        return self.shard.snapshot()


class LinksLogic(_StageLogic):
    def __init__(self, config: Config, resume: dict[str, Any] | None) -> None:
        super().__init__(LinkShard(-1, config.identity, fanout(config), resume))


class IdentityLogic(_StageLogic):
    def __init__(self, config: Config, resume: dict[str, Any] | None) -> None:
        super().__init__(IdentityShard(-1, config.identity, fanout(config), resume))
