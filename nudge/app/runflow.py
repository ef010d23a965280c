"""Running the dataflow from the command line: the config, the Bytewax run with recovery, a
bounded replay of files, and the summaries `nudge replay` and `nudge demo` print."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from nudge.core import config as config_mod
from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.keyring import activate

DEMO_DIR = Path("var/demo")
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "data" / "demo.toml"


log = logging.getLogger("nudge")

def with_changes(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


def load_config(args: argparse.Namespace) -> Config:
    cfg = config_mod.load(args.config)
    activate(cfg.secrets)  # the keys exist and are readable; log ids keyed as the flow's
    return cfg


def run_flow(flow: Any, *, workers: int = 1, process_id: int | None = None,
         addresses: list[str] | None = None, config: Config | None = None) -> None:
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from nudge.flows.dataflow import tune_gc

    tune_gc()
    recovery = None
    epoch = timedelta(seconds=10)
    if config is not None and config.recovery.dir:
        rdir = Path(config.recovery.dir)
        if not rdir.is_dir() or not any(rdir.iterdir()):
            raise NudgeError(
                f"config recovery.dir: {rdir} has no recovery store; create it once with "
                f"`nudge recovery init --config ...` (python -m bytewax.recovery {rdir} N)")
        from nudge.app.migrate import migrate, summary

        moves = migrate(rdir)  # state under earlier shard names (nudge/app/migrate.py)
        if moves:
            log.warning(summary(rdir, moves))
        recovery = RecoveryConfig(str(rdir),
                                  timedelta(milliseconds=config.recovery.backup_interval))
        epoch = timedelta(milliseconds=config.recovery.snapshot_interval)
    cli_main(flow, workers_per_process=workers, process_id=process_id, addresses=addresses,
             epoch_interval=epoch, recovery_config=recovery)


def summarize(decisions: Path, dead_letters: Path | None, outbox: Path | None) -> str:
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
    customers = set()
    if decisions.exists():
        with decisions.open("rb") as f:
            for line in f:
                d = orjson.loads(line)
                counts[(d["trigger"], d["outcome"], d["reason"] or "")] += 1
                customers.add(d["customer_id"])
    lines = [f"decisions: {sum(counts.values())} for {len(customers)} customers ({decisions})"]
    for (trigger, outcome, reason), n in sorted(counts.items()):
        lines.append(f"  {trigger:<20} {outcome:<11} {reason or '-':<15} {n:>7}")
    for path in (dead_letters, dead_letters.with_suffix(".delivery.jsonl")
                 if dead_letters else None):
        if path is not None and path.exists():
            reasons: collections.Counter[str] = collections.Counter()
            with path.open("rb") as f:
                for line in f:
                    reasons[orjson.loads(line)["reason"]] += 1
            detail = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
            lines.append(f"dead letters: {sum(reasons.values())} ({path}){': ' if detail else ''}"
                         f"{detail}")
    if outbox is not None:
        emails = len(list(outbox.glob("*.eml"))) if outbox.exists() else 0
        index = outbox / "index.html"
        lines.append(f"emails in outbox: {emails} -> open {index.resolve()}")
    return "\n".join(lines)


def summarize_more(config: Config) -> str:
    """Segment changes, attribution outcomes and the model, when the config has them."""
    lines = []
    seg = Path(config.outputs.segments) if config.outputs.segments not in ("", "kafka") else None
    if seg is not None and seg.exists():
        changes: collections.Counter[tuple[str, str]] = collections.Counter()
        with seg.open("rb") as f:
            for line in f:
                d = orjson.loads(line)
                changes[(d["segment"], d["change"])] += 1
        lines.append(f"segment changes: {sum(changes.values())} ({seg})")
        for name in sorted({s for s, _ in changes}):
            lines.append(f"  {name:<20} entered {changes[(name, 'entered')]:>6}   "
                         f"exited {changes[(name, 'exited')]:>6}")
    if config.outputs.profiles and config.model.enabled:
        from nudge.app.inspection import format_model_report, model_report

        try:
            lines.append(format_model_report(model_report(config)))
        except NudgeError as exc:
            lines.append(f"propensity model: {exc}")
    return "\n".join(lines)


def replay(files: list[str], config: Config, *, decisions: str, outbox: str | None,
           dead_letters: str | None, workers: int) -> Config:
    from nudge.flows.dataflow import build_flow
    from nudge.sources.files import JsonlSource

    outputs = with_changes(config.outputs, decisions=decisions,
                    dead_letters=dead_letters or config.outputs.dead_letters)
    delivery = config.delivery
    if outbox is not None:
        delivery = with_changes(delivery, transport="outbox", outbox_dir=outbox)
    # A catalog topic is read to its end, like the files: a replay is bounded. A replay
    # runs without recovery: its shards keep their customers in memory, never in (nor
    # rolling back) the stores of `nudge run` under recovery.dir.
    config = with_changes(config, outputs=outputs, delivery=delivery,
                   kafka=with_changes(config.kafka, tail=False),
                   recovery=with_changes(config.recovery, dir=""))
    for path in (decisions, outputs.dead_letters, outputs.segments, outputs.outcomes):
        if path and path != "kafka":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).unlink(missing_ok=True)
    delivery_dl = Path(outputs.dead_letters).with_suffix(".delivery.jsonl")
    delivery_dl.unlink(missing_ok=True)
    flow = build_flow(config, source=JsonlSource(files, config.events.batch_size))
    run_flow(flow, workers=workers)
    return config

