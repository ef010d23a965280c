"""The Nudge dataflow: sources -> parse -> route -> customers -> decide -> render -> deliver.

Step ids are stored schema: Bytewax recovery keys state by them, so renaming one silently
drops its state. Add steps; never rename these.

Run it with `nudge run` / `nudge replay`, or with Bytewax directly:

    python -m bytewax.run "nudge.flows.dataflow:get_flow('nudge.toml')" -w 2
"""

from __future__ import annotations

import dataclasses
import gc
from functools import partial
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import DynamicSink, FixedPartitionedSink, Sink

from nudge.core import config as config_mod
from nudge.core import metrics
from nudge.core.config import Config
from nudge.core.errors import NudgeError
from nudge.core.ids import log_id
from nudge.core.keyring import activate
from nudge.core.records import (
    OUTCOME_ERASED,
    OUTCOME_SENT,
    DeadLetter,
    Decision,
    Email,
    Erasure,
    Outcome,
    ProfileWrite,
    SegmentChange,
    ShardMark,
)
from nudge.flows.addresses import AddressesLogic, to_addresses, via_addresses
from nudge.flows.catalog import CatalogChunk, CatalogParseLogic
from nudge.flows.customers import CustomersLogic
from nudge.flows.decide import DECIDE_KEY, DecideLogic
from nudge.flows.identity import identity_steps
from nudge.flows.parse import ParseLogic
from nudge.flows.profiles import ProfileSink
from nudge.flows.route import Routes, route
from nudge.flows.sinks import (
    dead_letter_line,
    dead_letters_sink,
    decision_line,
    decisions_sink,
    lines_sink,
    outcome_line,
    segment_line,
)
from nudge.scoring.itemstats import ItemDelta
from nudge.state.program import compile_program


def _shaped(key: str, injected: Sink[Any] | None, default: Any, fmt: Any) -> tuple[Any, Sink[Any]]:
    """Injected sinks get the records; default sinks get JSON lines, keyed for file sinks."""
    if injected is not None:
        return (lambda item: item), injected
    sink = default()
    if isinstance(sink, FixedPartitionedSink):
        return (lambda item: (key, fmt(item))), sink
    return fmt, sink


def _render_step(config: Config) -> Any:
    from nudge.templates.render import Renderer

    renderer = Renderer(config)

    def render(item: tuple[str, Decision]) -> tuple[str, Email | Erasure | DeadLetter]:
        key, decision = item
        if decision.outcome == OUTCOME_ERASED:
            return key, Erasure(decision.customer_id, decision.due)  # for the ledger
        try:
            return key, renderer.render(decision)
        except NudgeError as exc:
            detail = f"customer {log_id(decision.customer_id)} {decision.trigger} " \
                     f"stage {decision.stage}: {exc}"
            return key, DeadLetter("render", "render_failed", detail, None,
                                   decision.idempotency_key.encode())
    return render


def _default_email_sink(config: Config) -> Sink[Any]:
    from nudge.flows.deliver import DeliverySink

    dl = config.outputs.dead_letters
    path = None if dl == "kafka" else Path(dl).with_suffix(".delivery.jsonl")
    return DeliverySink(config, path)


_DELIVERED = (OUTCOME_SENT, OUTCOME_ERASED)
_FOR_DECIDE = (Decision, ShardMark, ItemDelta)


def routes(config: Config) -> Routes:
    n = config.identity.shards if config.identity.enabled else 0
    return Routes(config.shards, n, n)


def _kind(cls: type) -> Any:
    return lambda item: type(item[1]) is cls


def catalog_source(config: Config) -> Source[Any]:
    """The catalog feed of the config: its files, else its Kafka topic (read to its end
    unless `kafka.tail`)."""
    cat = config.catalog
    if cat.files:
        from nudge.sources.catalogfiles import CatalogFileSource

        return CatalogFileSource(list(cat.files), config.events.batch_size)
    from nudge.kafka.catalog import KafkaCatalogSource

    return KafkaCatalogSource(config.kafka, config.events, cat.topic)


def _for_decide(item: tuple[str, CatalogChunk]) -> tuple[str, CatalogChunk]:
    chunk = item[1]  # its dead letters go their own way
    return DECIDE_KEY, dataclasses.replace(chunk, dead=[]) if chunk.dead else chunk


def build_flow(config: Config, *, source: Source[Any] | None = None,
               sink: Sink[Any] | None = None, dead_letter_sink: Sink[Any] | None = None,
               email_sink: Sink[Any] | None = None, segment_sink: Sink[Any] | None = None,
               outcome_sink: Sink[Any] | None = None,
               catalog: Source[Any] | None = None) -> Dataflow:
    """The dataflow for `config`. Tests inject any of the source and sinks.

    `sink` receives Decision records (the decision log); the default writes JSON lines to
    `outputs.decisions`. `dead_letter_sink` receives DeadLetter records; `email_sink`
    receives (key, Email) pairs, the default delivers through the configured transport;
    `segment_sink` and `outcome_sink` receive SegmentChange and Outcome records; `catalog`
    replaces the catalog feed of `[catalog]`. A bad config raises ConfigError here, naming
    the key (nudge/state/program.py).
    """
    program = compile_program(config)
    activate(config.secrets)  # log ids keyed before any step prints one
    if source is None:
        from nudge.kafka.source import KafkaEventSource

        source = KafkaEventSource(config.kafka, config.events)
    outputs = config.outputs

    flow = Dataflow("nudge")
    raw = op.input("sources", flow, source)
    # (partition key, RawChunk): a batch of one source partition, in partition order
    parsed = op.stateful_batch("parse", raw, partial(ParseLogic, config.events,
                                                     identity=config.identity))
    # (partition key, ParsedChunk): events with effective times, dead letters, watermark
    bad_input = op.flat_map("dead_letters", parsed, lambda item: item[1].dead)
    # DeadLetter
    routed = op.flat_map("route", parsed, partial(route, shards=routes(config)))
    # (shard key | links key | identity key, ShardChunk): a chunk's events per destination,
    # then the partition's tick
    routed, identity_dead = identity_steps(config, routed)
    # (shard key, ShardChunk) from route and the identity steps (nudge/flows/identity.py)
    shards = op.stateful_batch(
        "customers", routed, partial(CustomersLogic, program, bool(outputs.profiles)))
    # (shard key, Decision | ShardMark | ItemDelta | SegmentChange | Outcome | ProfileWrite)
    to_decide = op.filter_map("to_decide", shards, lambda item: (
        (DECIDE_KEY, item[1]) if type(item[1]) in _FOR_DECIDE
        and not (type(item[1]) is Decision and via_addresses(item[1])) else None))
    # ("decide", Decision (not sent) | ShardMark | ItemDelta)
    to_check = op.flat_map("to_addresses", shards, partial(to_addresses, shards=config.shards))
    # (address shard key, (n, AddressChange | Decision (sent) | ShardMark)), by address
    checked = op.stateful_batch("addresses", to_check, partial(AddressesLogic, config.shards))
    # (address shard key, Decision | ShardMark): sent, or suppressed for the address
    to_decide = op.merge("decide_in", to_decide, op.map(
        "from_addresses", checked, lambda item: (DECIDE_KEY, item[1])))
    # ("decide", Decision | ShardMark | ItemDelta); marks of both steps (2 x shards)
    if config.catalog.enabled:
        feed = op.input("catalog_sources", flow, catalog or catalog_source(config))
        # (catalog partition key, RawChunk)
        products = op.stateful_batch("catalog_parse", feed,
                                     partial(CatalogParseLogic, config.events))
        # (catalog partition key, CatalogChunk): updates, dead letters, the watermark
        bad_input = op.merge("input_dead_letters", bad_input, op.flat_map(
            "catalog_dead_letters", products, lambda item: item[1].dead))
        to_decide = op.merge("decide_inputs", to_decide,
                             op.map("catalog_to_decide", products, _for_decide))
        # ("decide", Decision | ShardMark | ItemDelta | CatalogChunk)
    decided = op.stateful_batch("decide", to_decide, partial(
        DecideLogic, 2 * config.shards, config.recommendations, catalog=config.catalog.enabled,
        max_products=config.catalog.max_products))
    # ("decide", Decision), in (due, customer, trigger, stage) order
    decisions = op.filter_map("decisions", decided, lambda item: (
        item[1] if item[1].outcome != OUTCOME_ERASED else None))
    # Decision
    log_fmt, log_sink = _shaped("decisions", sink, partial(decisions_sink, config),
                                decision_line)
    op.output("decision_log", op.map("decision_lines", decisions, log_fmt), log_sink)

    if program.segments and (segment_sink is not None or outputs.segments):
        changes = op.filter("segment_changes", shards, _kind(SegmentChange))
        # (shard key, SegmentChange), per customer in event-time order
        seg_fmt, seg_sink = _shaped("segments", segment_sink, partial(
            lines_sink, config, outputs.segments, config.kafka.segments_topic), segment_line)
        op.output("segment_out", op.map("segment_lines", changes,
                                        lambda item: seg_fmt(item[1])), seg_sink)
    if outcome_sink is not None or outputs.outcomes:
        outcomes = op.filter("outcomes", shards, _kind(Outcome))
        # (shard key, Outcome)
        out_fmt, out_sink = _shaped("outcomes", outcome_sink, partial(
            lines_sink, config, outputs.outcomes, config.kafka.outcomes_topic), outcome_line)
        op.output("outcome_out", op.map("outcome_lines", outcomes,
                                        lambda item: out_fmt(item[1])), out_sink)
    if outputs.profiles:
        writes = op.filter_map("profile_writes", shards, lambda item: (
            ("profiles", item[1]) if type(item[1]) is ProfileWrite else None))
        # ("profiles", ProfileWrite)
        op.output("profiles", writes, ProfileSink(outputs.profiles))

    bad_input = op.merge("with_identity_dead_letters", bad_input, identity_dead)
    if config.delivery.transport == "none" and email_sink is None:
        # Dry run (shadow mode): the decision log only, nothing rendered or sent.
        all_bad = bad_input
    else:
        sent = op.filter("sent", decided, lambda item: item[1].outcome in _DELIVERED)
        # ("decide", Decision) with outcome "sent", or an erasure for the ledger
        rendered = op.map("render", sent, _render_step(config))
        # ("decide", Email | DeadLetter)
        split = op.branch("rendered_ok", rendered,
                          lambda item: isinstance(item[1], (Email, Erasure)))
        bad_render = op.map("render_dead_letters", split.falses, lambda item: item[1])
        op.output("deliver", split.trues, email_sink or _default_email_sink(config))
        all_bad = op.merge("all_dead_letters", bad_input, bad_render)
    # DeadLetter
    if dead_letter_sink is None and outputs.dead_letters == "kafka":
        dead_letter_sink = dead_letters_sink(config)  # takes DeadLetter records as they are
    dl_fmt, dl_sink = _shaped("dead_letters", dead_letter_sink,
                              partial(dead_letters_sink, config), dead_letter_line)
    op.output("dead_letter_out", op.map("dead_letter_lines", all_bad, dl_fmt), dl_sink)
    return flow


def tune_gc() -> None:
    """Make Python's cyclic GC collect less often: the flow allocates millions of short-lived
    tuples, and default thresholds cost ~25% of the per-event time in gen-0/1 collections
    (measured with the benchmark). State lives in plain containers without cycles, so a
    higher threshold costs only a little memory: the count is of net new container objects,
    most of them customer records that live on anyway. At 100k a gen-0 pass over the young
    records ran every ~30k events (0.66 s per 1M events); at 1M, 0.37 s. Called by the
    entry points, not by build_flow, because it changes the whole process."""
    gc.set_threshold(1_000_000, 20, 100)
    gc.freeze()


def get_flow(config_path: str | None = None, *inputs: str) -> Dataflow:
    """Entry point for `python -m bytewax.run`: a config file, and JSONL files to replay
    (without files the source is the Kafka topic of the config)."""
    tune_gc()
    config = config_mod.load(config_path)
    source: Source[Any] | None = None
    if inputs:
        from nudge.sources.files import JsonlSource

        source = JsonlSource(list(inputs), config.events.batch_size)
    return build_flow(config, source=source)


__all__ = ["DynamicSink", "build_flow", "get_flow", "metrics", "tune_gc"]
