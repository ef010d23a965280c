"""The functions of the dataflow's stateless steps, pure and named.

nudge/flows/dataflow.py wires them into Bytewax; tests/harness.py calls the same functions in
the same order without Bytewax. Each says the item shape it takes and gives.
"""

from __future__ import annotations

import dataclasses

from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.errors import NudgeError
from nudge.core.ids import log_id
from nudge.core.records import (
    OUTCOME_ERASED,
    OUTCOME_SENT,
    AddressChange,
    Decision,
    Email,
    Erasure,
    Outcome,
    ParsedChunk,
    ProfileWrite,
    SegmentChange,
    ShardMark,
)
from nudge.flows import addresses
from nudge.flows.addresses import via_addresses
from nudge.flows.catalog import CatalogChunk
from nudge.flows.decide import DECIDE_KEY
from nudge.flows.route import Routes
from nudge.state.outputs import DecideInput, ShardOutput

PROFILES_KEY = "profiles"  # the profile view's one sink partition
_DELIVERED = (OUTCOME_SENT, OUTCOME_ERASED)  # through render to deliver (the ledger)


def routes(config: Config) -> Routes:
    """Where route sends events: customer shards, and the identity steps' shards."""
    n = config.identity.shards if config.identity.enabled else 0
    return Routes(config.shards, n, n)


def dead_letters(item: tuple[str, ParsedChunk]) -> list[DeadLetter]:
    """(partition key, ParsedChunk) -> the chunk's dead letters."""
    return item[1].dead


def catalog_dead_letters(item: tuple[str, CatalogChunk]) -> list[DeadLetter]:
    """(catalog partition key, CatalogChunk) -> the chunk's dead letters."""
    return item[1].dead


def catalog_to_decide(item: tuple[str, CatalogChunk]) -> tuple[str, CatalogChunk]:
    """(catalog partition key, CatalogChunk) -> ("decide", CatalogChunk) without its dead
    letters (they go their own way)."""
    chunk = item[1]
    return DECIDE_KEY, dataclasses.replace(chunk, dead=[]) if chunk.dead else chunk


def to_decide(item: tuple[str, ShardOutput]) -> tuple[str, DecideInput] | None:
    """(shard key, ShardOutput) -> ("decide", DecideInput): the decisions that send nothing
    (sent ones pass the addresses step first), deltas and the mark; None if none."""
    out = item[1]
    decisions = [d for d in out.decisions if not via_addresses(d)] if out.decisions else []
    if not decisions and not out.deltas and out.mark is None:
        return None
    return DECIDE_KEY, DecideInput(decisions, out.deltas, out.mark)


def to_addresses(item: tuple[str, ShardOutput], n: int,
                 ) -> list[tuple[str, tuple[int, AddressChange | Decision | ShardMark]]]:
    """(shard key, ShardOutput) -> (address shard key, (address shard, x)): the sent
    decisions by recipient, the address changes by address, the mark to every address
    shard; `n` address shards (nudge/flows/addresses.py: address_shards)."""
    out = item[1]
    routed = []
    for d in out.decisions:
        routed.extend(addresses.to_addresses(("", d), n))
    for change in out.addresses:
        routed.extend(addresses.to_addresses(("", change), n))
    if out.mark is not None:
        routed.extend(addresses.to_addresses(("", out.mark), n))
    return routed


def from_addresses(item: tuple[str, Decision | ShardMark]) -> tuple[str, DecideInput]:
    """(address shard key, Decision | ShardMark) -> ("decide", DecideInput)."""
    x = item[1]
    if isinstance(x, ShardMark):
        return DECIDE_KEY, DecideInput(mark=x)
    return DECIDE_KEY, DecideInput([x])


def segment_changes(item: tuple[str, ShardOutput]) -> list[SegmentChange]:
    """(shard key, ShardOutput) -> SegmentChange, per customer in event-time order."""
    return item[1].segments


def outcomes(item: tuple[str, ShardOutput]) -> list[Outcome]:
    """(shard key, ShardOutput) -> Outcome."""
    return item[1].outcomes


def profile_writes(item: tuple[str, ShardOutput]) -> list[tuple[str, ProfileWrite]]:
    """(shard key, ShardOutput) -> ("profiles", ProfileWrite)."""
    return [(PROFILES_KEY, w) for w in item[1].profiles]


def decision(item: tuple[str, Decision]) -> Decision | None:
    """("decide", Decision) -> Decision, for the decision log; an erasure is the ledger's,
    not the log's (None)."""
    d = item[1]
    return None if d.outcome == OUTCOME_ERASED else d


def sent(item: tuple[str, Decision]) -> bool:
    """Keeps ("decide", Decision) with outcome "sent", or an erasure for the ledger."""
    return item[1].outcome in _DELIVERED


def rendered_ok(item: tuple[str, Email | Erasure | DeadLetter]) -> bool:
    return not isinstance(item[1], DeadLetter)


def dead_letter(item: tuple[str, Email | Erasure | DeadLetter]) -> DeadLetter:
    """("decide", DeadLetter) -> DeadLetter (a render that failed)."""
    letter = item[1]
    assert isinstance(letter, DeadLetter)
    return letter


class Render:
    """("decide", Decision) -> ("decide", Email), or ("decide", DeadLetter) naming the
    customer (as a log id), the journey stage and what failed; an erasure -> ("decide",
    Erasure) for the ledger."""

    def __init__(self, config: Config) -> None:
        from nudge.templates.render import Renderer  # Jinja2 only for flows that render

        self.renderer = Renderer(config)

    def __call__(self, item: tuple[str, Decision]) -> tuple[str, Email | Erasure | DeadLetter]:
        key, d = item
        if d.outcome == OUTCOME_ERASED:
            return key, Erasure(d.customer_id, d.due)
        try:
            return key, self.renderer.render(d)
        except NudgeError as exc:
            detail = f"customer {log_id(d.customer_id)} {d.trigger} stage {d.stage}: {exc}"
            return key, DeadLetter("render", "render_failed", detail, None,
                                   d.idempotency_key.encode())
