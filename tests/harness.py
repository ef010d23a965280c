"""Run records through the dataflow's steps in plain Python (no Bytewax): parse -> route ->
(links -> identity) -> customers -> addresses -> decide, and the catalog's parse -> decide.

The step functions and stateful logics are the ones nudge/flows/dataflow.py wires (see
nudge/flows/steps.py), called in the graph's order; `_stateful` does what Bytewax's
`stateful_batch` does (one logic per key, built on its first item; each key's values of an
activation in one batch, keys in sorted order). Flow tests check that Bytewax gives the same
decisions.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.events import RawChunk
from nudge.core.ids import identity_key, links_key, shard_key
from nudge.core.records import Decision, Outcome, SegmentChange
from nudge.flows import steps
from nudge.flows.addresses import AddressesLogic, AddressShard, address_shards
from nudge.flows.catalog import CatalogParseLogic
from nudge.flows.customers import CustomersLogic
from nudge.flows.decide import DecideLogic
from nudge.flows.identity import IdentityLogic, LinksLogic
from nudge.flows.parse import ParseLogic
from nudge.flows.route import route
from nudge.state.identity import IdentityShard
from nudge.state.links import LinkShard
from nudge.state.outputs import ShardOutput
from nudge.state.program import Program, compile_program
from nudge.state.shard import Shard

V = TypeVar("V")
W = TypeVar("W")


def _stateful(logics: dict[str, Any], builder: Callable[[Any], Any],
              items: list[tuple[str, V]], eof: bool = False) -> list[tuple[str, Any]]:
    by_key: dict[str, list[V]] = {}
    for key, value in items:
        by_key.setdefault(key, []).append(value)
    out: list[tuple[str, Any]] = []
    for key in sorted(by_key):
        logic = logics.get(key)
        if logic is None:
            logic = logics[key] = builder(None)
        values, _ = logic.on_batch(by_key[key])
        out.extend((key, v) for v in values)
    if eof:
        for key in sorted(logics):
            values, _ = logics[key].on_eof()
            out.extend((key, v) for v in values)
    return out


def _flat(fn: Callable[[Any], list[W]], items: list[Any]) -> list[W]:
    return [out for item in items for out in fn(item)]


def _logged(decided: list[tuple[str, Decision]]) -> list[Decision]:
    return [d for item in decided if (d := steps.decision(item)) is not None]


class Pipeline:
    def __init__(self, config: Config | None = None, *, n_parts: int = 1,
                 program: Program | None = None) -> None:
        self.config = config or Config(shards=4)
        self.program = program or compile_program(self.config)
        # parse's one wall-clock read bounds timestamps from the future: 2030 here
        self._parse = partial(ParseLogic, self.config.events, clock=lambda: 1.9e9,
                              identity=self.config.identity)
        self._links = partial(LinksLogic, self.config)
        self._identity = partial(IdentityLogic, self.config)
        self.link_logics: dict[str, LinksLogic] = {}
        self.identity_logics: dict[str, IdentityLogic] = {}
        self._customers = partial(CustomersLogic, self.program, False)
        cat = self.config.catalog
        self._addresses = partial(AddressesLogic, self.config.shards)
        self.n_addr = address_shards(self.config.shards)
        self._decide = partial(DecideLogic, self.config.shards + self.n_addr,
                               self.config.recommendations,
                               catalog=cat.enabled, max_products=cat.max_products)
        self.address_logics: dict[str, AddressesLogic] = {}
        self._catalog_parse = partial(CatalogParseLogic, self.config.events)
        self.catalog_parse: dict[str, CatalogParseLogic] = {}
        self.parse: dict[str, ParseLogic] = {}
        self.customers: dict[str, CustomersLogic] = {}
        self.decide: dict[str, DecideLogic] = {}
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
        """Catalog records (position, bytes) of one catalog partition, through the catalog's
        parse step to decide."""
        chunk = RawChunk(part, n_parts, part, -1, records, heartbeat, final)
        chunks = _stateful(self.catalog_parse, self._catalog_parse, [(part, chunk)])
        self.dead.extend(_flat(steps.catalog_dead_letters, chunks))
        to_decide = [steps.catalog_to_decide(item) for item in chunks]
        out = _logged(_stateful(self.decide, self._decide, to_decide))
        self.decisions.extend(out)
        return out

    @property
    def shards(self) -> list[Shard]:
        """The customer shards, by number."""
        return [self._logic(self.customers, self._customers, shard_key(i)).shard
                for i in range(self.config.shards)]

    @property
    def addresses(self) -> list[AddressShard]:
        return [self._logic(self.address_logics, self._addresses, shard_key(i)).step
                for i in range(self.n_addr)]

    @property
    def links(self) -> list[LinkShard]:
        return [self._logic(self.link_logics, self._links, links_key(i)).shard
                for i in range(self.config.identity.shards)]

    @property
    def identity(self) -> list[IdentityShard]:
        return [self._logic(self.identity_logics, self._identity, identity_key(i)).shard
                for i in range(self.config.identity.shards)]

    @staticmethod
    def _logic(logics: dict[str, Any], builder: Callable[[Any], Any], key: str) -> Any:
        logic = logics.get(key)
        if logic is None:
            logic = logics[key] = builder(None)
        return logic

    def feed(self, records: list[bytes], *, part: int = 0, final: bool = False,
             heartbeat: int | None = None) -> list[Decision]:
        recs = []
        for raw in records:
            self.lines[part] += 1
            recs.append((self.lines[part], raw))
        chunk = RawChunk(f"p{part}", self.n_parts, f"test-{part}", -1, recs, heartbeat, final)
        parsed = _stateful(self.parse, self._parse, [(chunk.part, chunk)])
        self.dead.extend(_flat(steps.dead_letters, parsed))
        queue = _flat(partial(route, shards=steps.routes(self.config)), parsed)
        out: list[Decision] = []
        while queue:  # depth first: a step's outputs before the next input
            key, x = queue.pop(0)
            if key == "dead":
                self.dead.append(x)
            elif key.startswith("links-"):  # the identity steps' items carry their own keys
                queue[:0] = [y for _, y in _stateful(self.link_logics, self._links, [(key, x)])]
            elif key.startswith("identity-"):
                queue[:0] = [y for _, y in _stateful(self.identity_logics, self._identity,
                                                     [(key, x)])]
            else:
                out.extend(self._downstream(
                    _stateful(self.customers, self._customers, [(key, x)])))
        self.decisions.extend(out)
        return out

    def _downstream(self, shards: list[tuple[str, ShardOutput]],
                    eof: bool = False) -> list[Decision]:
        """The customers step's outputs on to their sinks, the addresses step and decide."""
        self.segments.extend(_flat(steps.segment_changes, shards))
        self.outcomes.extend(_flat(steps.outcomes, shards))
        to_decide = [x for item in shards if (x := steps.to_decide(item)) is not None]
        to_check = _flat(partial(steps.to_addresses, n=self.n_addr), shards)
        checked = _stateful(self.address_logics, self._addresses, to_check, eof)
        to_decide.extend(steps.from_addresses(item) for item in checked)
        return _logged(_stateful(self.decide, self._decide, to_decide, eof))

    def end(self) -> list[Decision]:
        """Every partition's final chunk, then end of input (`on_eof`), as the flow ends."""
        out: list[Decision] = []
        for part in range(self.n_parts):
            out.extend(self.feed([], part=part, final=True))
        shards = [(key, v) for key in sorted(self.customers)
                  for v in self.customers[key].on_eof()[0]]
        last = self._downstream(shards, eof=True)
        self.decisions.extend(last)
        return out + last

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
