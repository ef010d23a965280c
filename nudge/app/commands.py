"""The `nudge` subcommands: each reads its arguments and calls the module that does the work.

The parser and the entry point are nudge/app/cli.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from nudge.app.runflow import (
    DEMO_CONFIG,
    load_config,
    replay,
    run_flow,
    summarize,
    summarize_more,
    with_changes,
)
from nudge.core import config as config_mod
from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.keyring import refuse_demo_secrets


def cmd_replay(args: argparse.Namespace) -> int:
    cfg = replay(args.files, load_config(args), decisions=args.decisions, outbox=args.outbox,
                 dead_letters=args.dead_letters, workers=args.workers)
    outbox = Path(cfg.delivery.outbox_dir) if cfg.delivery.transport == "outbox" else None
    dl = None if cfg.outputs.dead_letters == "kafka" else Path(cfg.outputs.dead_letters)
    print(summarize(Path(args.decisions), dl, outbox))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    sample = Path(__file__).resolve().parents[1] / "data" / "sample-events.jsonl"
    out = Path(args.out)
    base = config_mod.load(args.config or DEMO_CONFIG)
    # A fresh ledger and view each demo run: the demo shows every email, not only new ones.
    for state in (out / "ledger", out / "profiles"):
        if state.exists():
            shutil.rmtree(state)
    cfg = with_changes(base, delivery=with_changes(base.delivery, ledger_dir=str(out / "ledger")),
                outputs=with_changes(base.outputs, segments=str(out / "segments.jsonl"),
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
    page = write_html(result, out / "report.html", with_changes(cfg, delivery=with_changes(
        cfg.delivery, transport="outbox", outbox_dir=str(outbox))))
    print(f"the full report: nudge report --config ... (HTML: open {page.resolve()})")
    print(f"inspect a customer: nudge inspect <customer id> --config {args.config or DEMO_CONFIG}"
          f" (with outputs.profiles = {cfg.outputs.profiles!r})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from nudge.app.report import format_text, from_config, when
    from nudge.app.reporthtml import write_html

    cfg = load_config(args)
    result = from_config(cfg, since=when(args.since, "--since"), until=when(args.until, "--until"),
                         decisions=args.decisions, outcomes=args.outcomes)
    print(format_text(result))
    if args.html:
        print(f"HTML report: {write_html(result, Path(args.html), cfg).resolve()}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from nudge.flows.dataflow import build_flow
    from nudge.kafka.source import KafkaEventSource

    cfg = load_config(args)
    refuse_demo_secrets(cfg.secrets, cfg.delivery.transport)
    if args.bounded:
        cfg = with_changes(cfg, kafka=with_changes(cfg.kafka, tail=False))
    source = KafkaEventSource(cfg.kafka, cfg.events)
    # List the topic here, before Bytewax does: a broker that stays unreachable (or a missing
    # topic) is then a SourceError that main() prints as one line, not a Rust panic and a
    # traceback from inside the dataflow. The source keeps the answer for Bytewax.
    source.list_parts()
    flow = build_flow(cfg, source=source)
    addresses = args.addresses.split(";") if args.addresses else None
    run_flow(flow, workers=args.workers, process_id=args.process_id, addresses=addresses,
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

    cfg = load_config(args)
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


def cmd_recovery_migrate(args: argparse.Namespace) -> int:
    from nudge.app.migrate import migrate, summary

    where = args.dir or load_config(args).recovery.dir
    if not where:
        raise NudgeError("config recovery.dir: not set; nothing to migrate (or pass --dir)")
    rdir = Path(where)
    if not rdir.is_dir():
        raise NudgeError(f"recovery store {rdir}: no such directory")
    moves = migrate(rdir)
    print(summary(rdir, moves) if moves else f"recovery store {rdir}: nothing to rename")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from nudge.core.timefmt import format_duration
    from nudge.state.program import compile_program

    cfg = load_config(args)
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
    print(orjson.dumps(profile(load_config(args), args.customer_id, at),
                       option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from nudge.app.erase import erase

    if bool(args.customer_id) == bool(args.email):
        print("nudge erase: give a CUSTOMER_ID or --email ADDR (one of them)")
        return 2
    report = erase(load_config(args), args.customer_id, args.email, kafka=not args.no_kafka)
    if args.no_kafka:
        for raw in report.events:
            print(raw.decode())
    print("\n".join(report.lines()), file=sys.stderr if args.no_kafka else sys.stdout)
    return 1 if report.held else 0


def cmd_model_report(args: argparse.Namespace) -> int:
    from nudge.app.inspection import format_model_report, model_report

    print(format_model_report(model_report(load_config(args))))
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from nudge.templates.render import preview

    path = preview(load_config(args), args.trigger, Path(args.out))
    print(f"wrote {path}")
    return 0


def cmd_deadletters_replay(args: argparse.Namespace) -> int:
    from nudge.app.deadletters import format_report
    from nudge.app.refeed import replay_dead_letters
    from nudge.core.timefmt import parse_duration

    cfg = load_config(args)
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


