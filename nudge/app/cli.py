"""The `nudge` command line.

    nudge demo                      replay the bundled sample; emails into an outbox folder
    nudge replay FILES --decisions OUT [--config C] [--outbox DIR]
    nudge run --config C            the live Kafka flow, with recovery when configured
    nudge recovery init --config C  create the recovery store once, before the first run
    nudge recovery migrate          rename state kept under earlier shard key names
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
import logging
import sys

from nudge.app.commands import (
    cmd_check,
    cmd_deadletters_replay,
    cmd_demo,
    cmd_erase,
    cmd_inspect,
    cmd_model_report,
    cmd_preview,
    cmd_recovery_init,
    cmd_recovery_migrate,
    cmd_replay,
    cmd_report,
    cmd_run,
    cmd_serve,
)
from nudge.app.runflow import DEMO_DIR
from nudge.core.errors import NudgeError

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
    mig = with_config(rec_sub.add_parser(
        "migrate", help="rename state kept under earlier shard key names (nudge run does it "
                        "too; this one for a store gathered from several machines)"))
    mig.add_argument("--dir", help="the recovery directory (default: recovery.dir)")
    mig.set_defaults(func=cmd_recovery_migrate)

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
