"""Run records through parse -> route -> shards -> decide in plain Python (no Bytewax).

The same pure functions the dataflow steps call, wired the way the dataflow wires them;
flow tests check that Bytewax gives the same decisions.
"""

from __future__ import annotations

from flows.decide import Decider
from flows.parse import ParseLogic
from flows.route import route
from nudge.config import Config
from nudge.records import DeadLetter, Decision, RawChunk
from state.policy import Policy
from state.shard import Shard


class Pipeline:
    def __init__(self, config: Config | None = None, *, n_parts: int = 1) -> None:
        self.config = config or Config(shards=4)
        self.policy = Policy.from_config(self.config)
        self.parse = [ParseLogic(self.config.events, None, clock=lambda: 1.8e9)
                      for _ in range(n_parts)]
        self.shards = [Shard(i, self.policy, self.config.events.dedup_window)
                       for i in range(self.config.shards)]
        self.decider = Decider(self.config.shards)
        self.decisions: list[Decision] = []
        self.dead: list[DeadLetter] = []
        self.n_parts = n_parts
        self.lines = [0] * n_parts

    def feed(self, records: list[bytes], *, part: int = 0, final: bool = False,
             heartbeat: int | None = None) -> list[Decision]:
        recs = []
        for raw in records:
            self.lines[part] += 1
            recs.append((self.lines[part], raw))
        chunk = RawChunk(f"p{part}", self.n_parts, f"test-{part}", -1, recs, heartbeat, final)
        parsed, _ = self.parse[part].on_batch([chunk])
        out: list[Decision] = []
        for pc in parsed:
            self.dead.extend(pc.dead)
            for _key, sc in route((pc.part, pc), self.config.shards):
                decisions, mark = self.shards[sc.shard].process([sc])
                items: list = list(decisions)
                if mark is not None:
                    items.append(mark)
                out.extend(self.decider.feed(items))
        self.decisions.extend(out)
        return out

    def end(self) -> list[Decision]:
        out: list[Decision] = []
        for part in range(self.n_parts):
            out.extend(self.feed([], part=part, final=True))
        return out

    def log(self) -> list[tuple]:
        return [(d.customer_id, d.trigger, d.episode, d.stage, d.due, d.outcome, d.reason)
                for d in self.decisions]
