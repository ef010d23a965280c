"""The customers step's output: one ShardOutput per batch, read by other workers."""

from __future__ import annotations

from typing import Any


def test_a_shard_output_stays_as_it_was_returned(monkeypatch: Any) -> None:
    """Workers run on while another reads what a shard returned (threads share items): an
    output must not share a list the shard goes on filling, or decide sees its decisions
    twice (once early, once in the next output)."""
    from nudge.flows import steps
    from tests.events import add, identify, view
    from tests.harness import Pipeline

    sent: list[Any] = []
    to_decide = steps.to_decide

    def keep(item: Any) -> Any:
        sent.append((item[1], len(item[1].decisions)))  # every ShardOutput passes here
        return to_decide(item)

    monkeypatch.setattr(steps, "to_decide", keep)
    p = Pipeline()
    for rec in [identify("u", 0), add("u", 1), view("z", 30), view("z", 61), view("z", 200),
                view("z", 500)]:
        p.feed([rec])
    p.end()
    assert p.decisions
    assert [len(batch.decisions) for batch, _ in sent] == [n for _, n in sent]
    assert sum(n for _, n in sent) == len(p.decisions)
