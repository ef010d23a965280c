"""The `nudge` command line.

    nudge demo                      replay the bundled sample; emails into an outbox folder
    nudge replay FILES --decisions OUT [--config C] [--outbox DIR]
    nudge run --config C            the live Kafka flow, with recovery when configured
    nudge recovery init --config C  create the recovery store once, before the first run
    nudge preview --config C        render a template for a sample customer to HTML
    nudge check --config C          validate a config: keys, journeys, segment rules
    nudge inspect CUSTOMER_ID       a customer's features, segments, scores and stages
    nudge model report              the propensity model's progressive validation
    nudge report --config C [--since T] [--until T] [--html FILE]
                                    what the emails earned: conversion, revenue, lift
    nudge deadletters replay --config C [--from FILE | --from-topic] [--dry-run]
                                    re-feed dead letters that parse after a fix
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from nudge.core import config as config_mod
from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.keyring import activate, refuse_demo_secrets

log = logging.getLogger("nudge")

DEMO_DIR = Path("var/demo")


def _with(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)


def _load(args: argparse.Namespace) -> Config:
    cfg = config_mod.load(args.config)
    activate(cfg.secrets)  # the keys exist and are readable; log ids keyed as the flow's
    return cfg


def _run(flow: Any, *, workers: int = 1, process_id: int | None = None,
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

    outputs = _with(config.outputs, decisions=decisions,
                    dead_letters=dead_letters or config.outputs.dead_letters)
    delivery = config.delivery
    if outbox is not None:
        delivery = _with(delivery, transport="outbox", outbox_dir=outbox)
    # A catalog topic is read to its end, like the files: a replay is bounded.
    config = _with(config, outputs=outputs, delivery=delivery,
                   kafka=_with(config.kafka, tail=False))
    for path in (decisions, outputs.dead_letters, outputs.segments, outputs.outcomes):
        if path and path != "kafka":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).unlink(missing_ok=True)
    delivery_dl = Path(outputs.dead_letters).with_suffix(".delivery.jsonl")
    delivery_dl.unlink(missing_ok=True)
    flow = build_flow(config, source=JsonlSource(files, config.events.batch_size))
    _run(flow, workers=workers)
    return config


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = replay(args.files, _load(args), decisions=args.decisions, outbox=args.outbox,
                 dead_letters=args.dead_letters, workers=args.workers)
    outbox = Path(cfg.delivery.outbox_dir) if cfg.delivery.transport == "outbox" else None
    dl = None if cfg.outputs.dead_letters == "kafka" else Path(cfg.outputs.dead_letters)
    print(summarize(Path(args.decisions), dl, outbox))
    return 0


DEMO_CONFIG = Path(__file__).resolve().parents[1] / "data" / "demo.toml"


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    sample = Path(__file__).resolve().parents[1] / "data" / "sample-events.jsonl"
    out = Path(args.out)
    base = config_mod.load(args.config or DEMO_CONFIG)
    # A fresh ledger and view each demo run: the demo shows every email, not only new ones.
    for state in (out / "ledger", out / "profiles"):
        if state.exists():
            shutil.rmtree(state)
    cfg = _with(base, delivery=_with(base.delivery, ledger_dir=str(out / "ledger")),
                outputs=_with(base.outputs, segments=str(out / "segments.jsonl"),
                              outcomes=str(out / "outcomes.jsonl"),
                              profiles=str(out / "profiles")))
    outbox = out / "outbox"
    if outbox.exists():
        for f in outbox.iterdir():
            if f.is_file():
                f.unlink()
    replay([str(sample)], cfg, decisions=str(out / "decisions.jsonl"), outbox=str(outbox),
           dead_letters=str(out / "dead-letters.jsonl"), workers=1)
    print(f"replayed {sample.name} through the dataflow "
          f"(config {args.config or DEMO_CONFIG.name})")
    print(summarize(out / "decisions.jsonl", out / "dead-letters.jsonl", outbox))
    print(summarize_more(cfg))
    from nudge.app.inspection import merged_carts

    merged = merged_carts(cfg, out / "decisions.jsonl")
    if merged:
        print(merged)
    from nudge.app.report import format_text, from_config
    from nudge.app.reporthtml import write_html

    result = from_config(cfg, decisions=str(out / "decisions.jsonl"))
    print(format_text(result, short=True))
    page = write_html(result, out / "report.html", _with(cfg, delivery=_with(
        cfg.delivery, transport="outbox", outbox_dir=str(outbox))))
    print(f"the full report: nudge report --config ... (HTML: open {page.resolve()})")
    print(f"inspect a customer: nudge inspect <customer id> --config {args.config or DEMO_CONFIG}"
          f" (with outputs.profiles = {cfg.outputs.profiles!r})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nudge.app.report import format_text, from_config, when
    from nudge.app.reporthtml import write_html

    cfg = _load(args)
    result = from_config(cfg, since=when(args.since, "--since"), until=when(args.until, "--until"),
                         decisions=args.decisions, outcomes=args.outcomes)
    print(format_text(result))
    if args.html:
        print(f"HTML report: {write_html(result, Path(args.html), cfg).resolve()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nudge.flows.dataflow import build_flow
    from nudge.kafka.source import KafkaEventSource

    cfg = _load(args)
    refuse_demo_secrets(cfg.secrets, cfg.delivery.transport)
    if args.bounded:
        cfg = _with(cfg, kafka=_with(cfg.kafka, tail=False))
    source = KafkaEventSource(cfg.kafka, cfg.events)
    # List the topic here, before Bytewax does: a broker that stays unreachable (or a missing
    # topic) is then a SourceError that main() prints as one line, not a Rust panic and a
    # traceback from inside the dataflow. The source keeps the answer for Bytewax.
    source.list_parts()
    flow = build_flow(cfg, source=source)
    addresses = args.addresses.split(";") if args.addresses else None
    _run(flow, workers=args.workers, process_id=args.process_id, addresses=addresses,
         config=cfg)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from nudge.serve.runner import serve

    if not args.config:
        raise NudgeError("nudge serve: --config is required (the Kafka brokers and topic, "
                         "and serve.write_keys_env)")
    return serve(args.config, port=args.port, workers=args.workers)


def cmd_recovery_init(args: argparse.Namespace) -> int:
    from bytewax.recovery import init_db_dir

    cfg = _load(args)
    if not cfg.recovery.dir:
        raise NudgeError("config recovery.dir: not set; nothing to initialise")
    rdir = Path(cfg.recovery.dir)
    rdir.mkdir(parents=True, exist_ok=True)
    if any(rdir.iterdir()):
        print(f"{rdir} already holds a recovery store; leaving it as it is")
        return 0
    init_db_dir(rdir, args.partitions)
    print(f"created a recovery store with {args.partitions} partitions in {rdir}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nudge.core.timefmt import format_duration
    from nudge.state.program import compile_program

    cfg = _load(args)
    refuse_demo_secrets(cfg.secrets, cfg.delivery.transport)
    program = compile_program(cfg)
    print(f"config {args.config or '(defaults)'}: ok")
    s = cfg.secrets
    if s.demo:
        print("  secrets: the public demo key (tokens can be forged; fine for the outbox only)")
    else:
        retired = ", ".join(f"{k.id} (retired)" for k in s.keys if k.retired is not None)
        print(f"  secrets: signing key {s.signing_key!r}, log ids keyed by "
              f"{s.log_id_key or s.signing_key!r}" + (f"; verifying {retired}" if retired else ""))
    for j in program.journeys:
        delays = ", ".join(format_duration(s.delay) for s in j.stages)
        print(f"  journey {j.name:<20} entry {cfg.trigger(j.name).entry!r}, stages {delays}")
    for name, rule in program.segments:
        print(f"  segment {name:<20} {rule.text}")
    print("  " + catalog_summary(cfg))
    return 0


def catalog_summary(cfg: Config) -> str:
    """What `nudge check` says about the catalog: without one nothing crosses customers."""
    from nudge.templates.render import link_policy

    hosts = ", ".join(sorted(link_policy(cfg).hosts))
    cat = cfg.catalog
    if not cat.enabled:
        recs = "off: recommendations need a catalog" if cfg.recommendations.enabled else "off"
        return (f"catalog: none. Emails show no product data from other customers' events: "
                f"no viewed products, recommendations {recs} ([catalog] topic or files). "
                f"Links and images only to: {hosts}")
    feed = f"topic {cat.topic!r}" if not cat.files else f"files {', '.join(cat.files)}"
    recs = "on" if cfg.recommending else "off"
    return (f"catalog: {feed}, at most {cat.max_products:,} products; recommendations "
            f"{recs}. Links and images only to: {hosts}")


def cmd_inspect(args: argparse.Namespace) -> int:
    from nudge.app.inspection import profile
    from nudge.core.timefmt import parse_iso

    at = parse_iso(args.at) if args.at else None
    print(orjson.dumps(profile(_load(args), args.customer_id, at),
                       option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from nudge.app.erase import erase

    if bool(args.customer_id) == bool(args.email):
        print("nudge erase: give a CUSTOMER_ID or --email ADDR (one of them)")
        return 2
    report = erase(_load(args), args.customer_id, args.email, kafka=not args.no_kafka)
    if args.no_kafka:
        for raw in report.events:
            print(raw.decode())
    print("\n".join(report.lines()), file=sys.stderr if args.no_kafka else sys.stdout)
    return 1 if report.held else 0


def cmd_model_report(args: argparse.Namespace) -> int:
    from nudge.app.inspection import format_model_report, model_report

    print(format_model_report(model_report(_load(args))))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from nudge.templates.render import preview

    path = preview(_load(args), args.trigger, Path(args.out))
    print(f"wrote {path}")
    return 0


DEADLETTERS_REPLAY = """\
Re-parse every dead letter of stage "parse" with the parser and THIS config (events.*),
and put the ones that parse now back into the input they came from:

  Kafka input   produced to kafka.topic, into the partition it was read from, keyed by
                the customer id; the running flow (`nudge run`, which must already run
                with the fixed config) applies them.
  file input    one replay file per source file (NAME.replay.jsonl) in a new directory
                under dead_letter_replay.out_dir (or --out). Files are partitions: a
                customer's events were in one source file and stay in one replay file.
                Replay them with `nudge replay FILES --config C --decisions OUT
                --dead-letters NEW` (it starts from empty state: the events are decided
                on with each other only; it replaces its dead letters file).

Each dead letter is re-fed at most once, ever: handled ones are recorded in a RocksDB
store (dead_letter_replay.state_dir), keyed by their source position and bytes. Ones that
still fail are skipped, counted by reason, and not recorded, so a later fix can bring
them back; ones that events.ignore now lists are recorded and not re-fed.

Event time: a re-fed event older than the partition's watermark is applied AT the
watermark, never dropped (README "Event time"): a recovered Product Added opens a cart
whose stages fall due after the watermark. --max-age leaves old events out. Its
messageId still de-duplicates it against a copy the producer sent again, within
events.dedup_window.

Render and deliver dead letters are reported, not re-fed: they are decisions whose email
failed, not input. A render failure leaves no ledger entry: fix the template and replay
the input (`nudge replay`, or `nudge run --bounded` on a new recovery.dir) with the same
delivery.ledger_dir, which sends only what was not sent. A delivery failure is recorded in
the ledger as dead-lettered, so no run retries it on its own; fix the transport and send
it by hand, or remove its ledger key before replaying the input.
"""


def cmd_deadletters_replay(args: argparse.Namespace) -> int:
    from nudge.app.deadletters import format_report
    from nudge.app.refeed import replay_dead_letters
    from nudge.core.timefmt import parse_duration

    cfg = _load(args)
    max_age = None
    if args.max_age is not None:
        try:
            max_age = parse_duration(args.max_age)
        except ValueError as exc:
            raise NudgeError(f"--max-age: {exc}") from None
    report, files = replay_dead_letters(cfg, from_file=args.from_file,
                                        from_topic=args.from_topic, out=args.out,
                                        dry_run=args.dry_run, max_age=max_age)
    print(format_report(report, dry_run=args.dry_run))
    if files:
        conf = f" --config {args.config}" if args.config else ""
        print(f"Replay files are partitions: each {'would hold' if args.dry_run else 'holds'} "
              "the re-fed events of one source file, in their original order.\n"
              "Replay them with (a dead letters file of their own keeps this one, which "
              "`nudge replay` would replace):\n  nudge replay "
              + " ".join(str(f) for f in files) + f"{conf} --decisions DECISIONS.jsonl "
              f"--dead-letters {files[0].parent / 'dead-letters.jsonl'}")
    if any(r.kafka for r in report.refeed):
        print(f"Re-fed records {'would go' if args.dry_run else 'went'} to the end of their "
              f"partitions of {cfg.kafka.topic}; the running flow applies them at its "
              "watermark and must run with this config, or they are dead-lettered again.")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nudge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help="TOML config file (defaults apply to what it omits)")
        return sp

    demo = with_config(sub.add_parser("demo", help="replay the bundled sample into an outbox"))
    demo.add_argument("--out", default=str(DEMO_DIR))
    demo.set_defaults(func=cmd_demo)

    rp = with_config(sub.add_parser("replay", help="replay JSONL files through the dataflow"))
    rp.add_argument("files", nargs="+", help="one partition per file, split by customer")
    rp.add_argument("--decisions", required=True, help="decision log to write (JSONL)")
    rp.add_argument("--outbox", help="write emails as .eml files here (outbox transport)")
    rp.add_argument("--dead-letters", help="dead letters file (default: outputs.dead_letters)")
    rp.add_argument("--workers", type=int, default=1)
    rp.set_defaults(func=cmd_replay)

    run = with_config(sub.add_parser("run", help="run the Kafka dataflow"))
    run.add_argument("--workers", type=int, default=1, help="worker threads in this process")
    run.add_argument("--process-id", type=int, help="this process's index in a cluster")
    run.add_argument("--addresses", help='cluster addresses "host:port;host:port"')
    run.add_argument("--bounded", action="store_true",
                     help="stop at the end of the topic (replay) instead of tailing it")
    run.set_defaults(func=cmd_run)

    sv = with_config(sub.add_parser(
        "serve", help="the web service: Segment-compatible collector, tracking, unsubscribe, "
                      "ESP webhooks"))
    sv.add_argument("--port", type=int, help="override serve.port")
    sv.add_argument("--workers", type=int, help="override serve.workers")
    sv.set_defaults(func=cmd_serve)

    rec = sub.add_parser("recovery", help="manage the Bytewax recovery store")
    rec_sub = rec.add_subparsers(dest="recovery_command", required=True)
    init = with_config(rec_sub.add_parser("init", help="create the store (once)"))
    init.add_argument("--partitions", type=int, default=1)
    init.set_defaults(func=cmd_recovery_init)

    dl = sub.add_parser("deadletters", help="work with dead letters")
    dl_sub = dl.add_subparsers(dest="deadletters_command", required=True)
    dlr = with_config(dl_sub.add_parser(
        "replay", help="re-feed dead letters that parse after a fix",
        description=DEADLETTERS_REPLAY, formatter_class=argparse.RawDescriptionHelpFormatter))
    where = dlr.add_mutually_exclusive_group()
    where.add_argument("--from", dest="from_file", metavar="FILE",
                       help="dead letters file (default: outputs.dead_letters)")
    where.add_argument("--from-topic", action="store_true",
                       help="read kafka.dead_letter_topic (the default when outputs."
                            "dead_letters is \"kafka\")")
    dlr.add_argument("--out", metavar="DIR",
                     help="directory for replay files (default: a new one under "
                          "dead_letter_replay.out_dir)")
    dlr.add_argument("--max-age", metavar="DURATION",
                     help="leave out events older than this (e.g. 7d); not recorded")
    dlr.add_argument("--dry-run", action="store_true",
                     help="print what would happen; write, produce and record nothing")
    dlr.set_defaults(func=cmd_deadletters_replay)

    ck = with_config(sub.add_parser("check", help="validate a config (rules, journeys, keys)"))
    ck.set_defaults(func=cmd_check)

    ins = with_config(sub.add_parser(
        "inspect", help="a customer's features, segments, scores, pending stages, decisions"))
    ins.add_argument("customer_id")
    ins.add_argument("--at", help="compute time-dependent features at this ISO-8601 time "
                                  "(default: the customer's last event)")
    ins.set_defaults(func=cmd_inspect)

    er = with_config(sub.add_parser(
        "erase", help="erase a customer (right to erasure): an Erasure Requested event for "
                      "the flow, and the offline stores"))
    er.add_argument("customer_id", nargs="?", help="the customer id (userId or anonymousId)")
    er.add_argument("--email", help="erase every customer with this address (found in the "
                                    "profile view) and suppress the address")
    er.add_argument("--no-kafka", action="store_true",
                    help="print the event(s) as JSON lines (to append to a replay file) "
                         "instead of producing them to kafka.topic")
    er.set_defaults(func=cmd_erase)

    model = sub.add_parser("model", help="the propensity model")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    mr = with_config(model_sub.add_parser(
        "report", help="progressive validation (ROC AUC, log loss) from the profile view"))
    mr.set_defaults(func=cmd_model_report)

    rep = with_config(sub.add_parser(
        "report", help="what the emails earned per journey, stage and variant: conversion "
                       "with intervals, revenue, lift over control and holdout"))
    rep.add_argument("--since", help="decisions due at or after (ISO-8601 time or date)")
    rep.add_argument("--until", help="decisions due before (ISO-8601 time or date)")
    rep.add_argument("--html", metavar="FILE", help="also write the HTML report with plots")
    rep.add_argument("--decisions", metavar="FILE", help="default: outputs.decisions (a file, "
                                                         "or its topic when \"kafka\")")
    rep.add_argument("--outcomes", metavar="FILE", help="default: outputs.outcomes")
    rep.set_defaults(func=cmd_report)

    pv = with_config(sub.add_parser("preview", help="render a template to an HTML file"))
    pv.add_argument("--trigger", default="cart_abandonment")
    pv.add_argument("--out", default="var/preview.html")
    pv.set_defaults(func=cmd_preview)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        print(f"nudge: {' '.join(str(error).split())}", file=sys.stderr)
        return 2


def user_error(exc: BaseException) -> NudgeError | None:
    """The NudgeError behind `exc`: itself, or the cause of Bytewax's error when a step
    raised it inside the dataflow (Bytewax wraps it in BytewaxRuntimeErrors)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, NudgeError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
