"""Run records through parse -> route -> (links -> identity) -> shards -> decide in plain
Python (no Bytewax).

The same pure functions the dataflow steps call, wired the way the dataflow wires them;
flow tests check that Bytewax gives the same decisions.
"""

from __future__ import annotations

from typing import Any

from nudge.core.config import Config
from nudge.core.records import (
    OUTCOME_ERASED,
    DeadLetter,
    Decision,
    Outcome,
    SegmentChange,
    ShardMark,
)
from nudge.flows.addresses import AddressShard, to_addresses, via_addresses
from nudge.flows.catalog import CatalogParseLogic
from nudge.flows.dataflow import routes
from nudge.flows.decide import Decider
from nudge.flows.identity import fanout
from nudge.flows.parse import ParseLogic
from nudge.flows.route import route
from nudge.scoring.itemstats import ItemDelta
from nudge.state.identity import IdentityShard
from nudge.state.links import LinkShard
from nudge.state.program import compile_program
from nudge.state.shard import Shard


class Pipeline:
    def __init__(self, config: Config | None = None, *, n_parts: int = 1) -> None:
        self.config = config or Config(shards=4)
        self.program = compile_program(self.config)
        # parse's one wall-clock read bounds timestamps from the future: 2030 here
        self.parse = [ParseLogic(self.config.events, None, clock=lambda: 1.9e9)
                      for _ in range(n_parts)]
        self.shards = [Shard(i, self.program) for i in range(self.config.shards)]
        self.addresses = [AddressShard(self.config.shards) for _ in range(self.config.shards)]
        ident = self.config.identity
        fan = fanout(self.config)
        self.links = [LinkShard(i, ident, fan) for i in range(ident.shards)]
        self.identity = [IdentityShard(i, ident, fan) for i in range(ident.shards)]
        cat = self.config.catalog
        self.decider = Decider(2 * self.config.shards, self.config.recommendations,
                               catalog=cat.enabled, max_products=cat.max_products)
        self.catalog_parse: dict[str, CatalogParseLogic] = {}
        self.decisions: list[Decision] = []
        self.segments: list[SegmentChange] = []
        self.outcomes: list[Outcome] = []
        self.dead: list[DeadLetter] = []
        self.n_parts = n_parts
        self.lines = [0] * n_parts
        if cat.files:
            from pathlib import Path

            from nudge.sources.catalogfiles import read_records

            for f in cat.files:
                self.feed_catalog(list(read_records(Path(f))), part=f"catalog:{Path(f).name}",
                                  n_parts=len(cat.files), final=True)

    def feed_catalog(self, records: list[tuple[int, bytes]], *, part: str = "catalog",
                     n_parts: int = 1, final: bool = False,
                     heartbeat: int | None = None) -> list[Decision]:
        """Catalog records (position, bytes) of one catalog partition, as its parse step and
        the decide step get them."""
        from nudge.core.records import RawChunk

        logic = self.catalog_parse.setdefault(part, CatalogParseLogic(self.config.events, None))
        chunks, _ = logic.on_batch([RawChunk(part, n_parts, part, -1, records, heartbeat,
                                             final)])
        for c in chunks:
            self.dead.extend(c.dead)
        out = [d for d in self.decider.feed(list(chunks)) if d.outcome != OUTCOME_ERASED]
        self.decisions.extend(out)
        return out

    def feed(self, records: list[bytes], *, part: int = 0, final: bool = False,
             heartbeat: int | None = None) -> list[Decision]:
        from nudge.core.records import RawChunk

        recs = []
        for raw in records:
            self.lines[part] += 1
            recs.append((self.lines[part], raw))
        chunk = RawChunk(f"p{part}", self.n_parts, f"test-{part}", -1, recs, heartbeat, final)
        parsed, _ = self.parse[part].on_batch([chunk])
        out: list[Decision] = []
        for pc in parsed:
            self.dead.extend(pc.dead)
            queue = route((pc.part, pc), routes(self.config))
            while queue:  # depth first: a step's outputs before the next input
                key, sc = queue.pop(0)
                if key == "dead":
                    self.dead.append(sc)
                elif key.startswith("links-"):
                    queue[:0] = self.links[sc.shard].process([sc])
                elif key.startswith("identity-"):
                    queue[:0] = self.identity[sc.shard].process([sc])
                else:
                    out.extend(self._customers(sc))
        out = [d for d in out if d.outcome != OUTCOME_ERASED]  # the ledger's, not the log's
        self.decisions.extend(out)
        return out

    def _customers(self, sc: Any) -> list[Decision]:
        items = self.shards[sc.shard].process([sc])
        to_decide: list[Any] = []
        to_check: dict[int, list[Any]] = {}
        for item in items:
            if isinstance(item, SegmentChange):
                self.segments.append(item)
            elif isinstance(item, Outcome):
                self.outcomes.append(item)
            elif isinstance(item, (Decision, ShardMark, ItemDelta)) and \
                    not (isinstance(item, Decision) and via_addresses(item)):
                to_decide.append(item)
            for _, (a, x) in to_addresses(("", item), self.config.shards):
                to_check.setdefault(a, []).append((a, x))
        for a, batch in sorted(to_check.items()):
            to_decide.extend(self.addresses[a].feed(batch))
        return self.decider.feed(to_decide)

    def end(self) -> list[Decision]:
        out: list[Decision] = []
        for part in range(self.n_parts):
            out.extend(self.feed([], part=part, final=True))
        return out

    def log(self) -> list[tuple]:
        return [(d.customer_id, d.trigger, d.episode, d.stage, d.due, d.outcome, d.reason,
                 d.variant) for d in self.decisions]


def cart_stages(*delays: int, **fields: Any) -> Config:
    """A Config (with `fields`) whose cart abandonment journey has these stage delays."""
    import dataclasses

    from nudge.core.journeyconfig import StageConfig

    base = Config(**fields)
    stages = tuple(StageConfig(d, "cart_abandonment") for d in delays)
    return dataclasses.replace(base, triggers=tuple(
        dataclasses.replace(t, stages=stages) if t.name == "cart_abandonment" else t
        for t in base.triggers))
