"""The Nudge dataflow: sources -> parse -> route -> customers -> decide -> render -> deliver.

Built from named parts, each a function below returning its typed streams:

    read_and_parse       sources, parse, dead_letters     -> Parsed (chunks, dead letters)
    catalog              catalog_sources, catalog_parse, catalog_to_decide,
                         catalog_dead_letters             -> Catalog (chunks, dead letters)
    customers            route, (identity steps), customers -> Customers (outputs, dead)
    check_addresses      to_addresses, addresses, from_addresses -> ("decide", DecideInput)
    decide               to_decide, decide_in, decide_inputs, decide -> ("decide", Decision)
    decision_log         decisions, decision_lines, decision_log
    shard_outputs        segment_changes, segment_lines, segment_out, outcomes,
                         outcome_lines, outcome_out, profile_writes, profiles
    render_and_deliver   sent, render, rendered_ok, deliver -> render_dead_letters
    dead_letter_out      (all_dead_letters,) dead_letter_lines, dead_letter_out

The stateless steps' functions are in nudge/flows/steps.py, the stateful ones' logic in
parse.py, customers.py (nudge/state/shard.py) and decide.py; tests/harness.py runs the same
functions without Bytewax.

Step ids are stored schema: Bytewax recovery keys state by them, so renaming one silently
drops its state. Add steps; never rename these.

Run it with `nudge run` / `nudge replay`, or with Bytewax directly:

    python -m bytewax.run "nudge.flows.dataflow:get_flow('nudge.toml')" -w 2
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.operators import KeyedStream
from bytewax.outputs import DynamicSink, FixedPartitionedSink, Sink

from nudge.core import config as config_mod
from nudge.core import metrics
from nudge.core.config import Config
from nudge.core.deadletter import DeadLetter
from nudge.core.keyring import activate
from nudge.core.records import Decision, ParsedChunk
from nudge.flows import exchange, steps
from nudge.flows.addresses import AddressesLogic, address_shards
from nudge.flows.catalog import CatalogChunk, CatalogParseLogic
from nudge.flows.customers import CustomersLogic
from nudge.flows.decide import DecideInputs, DecideLogic
from nudge.flows.identity import identity_steps
from nudge.flows.parse import ParseLogic
from nudge.flows.profiles import ProfileSink
from nudge.flows.route import route
from nudge.flows.sinks import (
    dead_letter_line,
    dead_letters_sink,
    decision_line,
    decisions_sink,
    lines_sink,
    outcome_line,
    segment_line,
)
from nudge.state.outputs import DecideInput, ShardOutput
from nudge.state.program import Program, compile_program

T = TypeVar("T")


def _shaped(key: str, injected: Sink[Any] | None, default: Callable[[], Sink[Any]],
            fmt: Callable[[T], Any]) -> tuple[Callable[[T], Any], Sink[Any]]:
    """Injected sinks get the records; default sinks get JSON lines, keyed for file sinks."""
    if injected is not None:
        return (lambda item: item), injected
    sink = default()
    if isinstance(sink, FixedPartitionedSink):
        return (lambda item: (key, fmt(item))), sink
    return fmt, sink


# -- the parts: each wires a few steps and returns its typed output streams ---------------
#
# The parts are plain functions, not Bytewax `@operator` composites, on purpose: a composite
# puts its steps under its own id (`nudge.customers.customers`), and recovery keys state by
# that full path, so wrapping a stateful step would drop its state. Every step id below is
# the same as ever (tests/test_step_ids.py pins the stateful ones).


@dataclass(frozen=True)
class Parsed:
    chunks: KeyedStream[ParsedChunk]  # (partition key, ParsedChunk), in partition order
    dead: Stream[DeadLetter]  # input that failed validation


def read_and_parse(flow: Dataflow, source: Source[Any], config: Config) -> Parsed:
    """Steps `sources`, `parse`, `dead_letters`."""
    raw = op.input("sources", flow, source)
    # (partition key, RawChunk): a batch of one source partition, in partition order
    parsed = op.stateful_batch("parse", raw, partial(ParseLogic, config.events,
                                                     identity=config.identity))
    return Parsed(parsed, op.flat_map("dead_letters", parsed, steps.dead_letters))


@dataclass(frozen=True)
class Customers:
    outputs: KeyedStream[ShardOutput]  # (shard key, ShardOutput): one per shard batch
    dead: Stream[DeadLetter]  # what the identity steps refused


def customers(parsed: Parsed, program: Program, config: Config) -> Customers:
    """Steps `route`, the identity steps (nudge/flows/identity.py), `customers`: every
    customer's events, in one order per shard."""
    routed = op.flat_map("route", parsed.chunks, partial(route, shards=steps.routes(config)))
    # (shard key | links key | identity key, ShardChunk): a chunk's events per destination,
    # then the partition's tick
    routed, identity_dead = identity_steps(config, routed)
    # (shard key, ShardChunk) from route and the identity steps
    # With recovery, each shard's records live in a RocksDB store under recovery.dir and its
    # snapshot carries the store's position (nudge/state/customerdb.py).
    disk = ((str(Path(config.recovery.dir) / "customers"), config.recovery.store_history)
            if config.recovery.dir else None)
    return Customers(op.stateful_batch(
        "customers", routed,
        partial(CustomersLogic, program, bool(config.outputs.profiles), disk=disk)),
        identity_dead)


def catalog(flow: Dataflow, source: Source[Any], config: Config) -> Catalog:
    """Steps `catalog_sources`, `catalog_parse`, `catalog_dead_letters`,
    `catalog_to_decide`: the shop's product feed, for decide."""
    feed = op.input("catalog_sources", flow, source)
    # (catalog partition key, RawChunk)
    products = op.stateful_batch("catalog_parse", feed,
                                 partial(CatalogParseLogic, config.events))
    # (catalog partition key, CatalogChunk): updates, dead letters, the watermark
    return Catalog(op.map("catalog_to_decide", products, steps.catalog_to_decide),
                   op.flat_map("catalog_dead_letters", products, steps.catalog_dead_letters))


@dataclass(frozen=True)
class Catalog:
    chunks: KeyedStream[CatalogChunk]  # ("decide", CatalogChunk) without its dead letters
    dead: Stream[DeadLetter]


def catalog_source(config: Config) -> Source[Any]:
    """The catalog feed of the config: its files, else its Kafka topic (read to its end
    unless `kafka.tail`)."""
    cat = config.catalog
    if cat.files:
        from nudge.sources.catalogfiles import CatalogFileSource

        return CatalogFileSource(list(cat.files), config.events.batch_size)
    from nudge.kafka.catalog import KafkaCatalogSource

    return KafkaCatalogSource(config.kafka, config.events, cat.topic)


def check_addresses(shards: KeyedStream[ShardOutput],
                    config: Config) -> KeyedStream[DecideInput]:
    """Steps `to_addresses`, `addresses`, `from_addresses`: every sent decision passes the
    shard of its address, which may suppress it (nudge/flows/addresses.py)."""
    to_check = op.flat_map("to_addresses", shards,
                           partial(steps.to_addresses, n=address_shards(config.shards)))
    # (address shard key, (address shard, AddressChange | Decision (sent) | ShardMark))
    checked = op.stateful_batch("addresses", to_check, partial(AddressesLogic, config.shards))
    # (address shard key, Decision | ShardMark): sent, or suppressed for the address
    return op.map("from_addresses", checked, steps.from_addresses)
    # ("decide", DecideInput): a checked decision, or an address shard's mark


def decide(shards: KeyedStream[ShardOutput], checked: KeyedStream[DecideInput],
           products: Catalog | None, config: Config) -> KeyedStream[Decision]:
    """Steps `to_decide`, `decide_in`, (`decide_inputs`,) `decide`: every decision in one
    order, with what it shows from the catalog."""
    to_decide: KeyedStream[DecideInputs] = op.filter_map("to_decide", shards, steps.to_decide)
    # ("decide", DecideInput): a shard batch's decisions that send nothing, deltas, mark
    to_decide = op.merge("decide_in", to_decide, checked)
    # the marks of both steps: shards + address_shards(shards)
    if products is not None:
        to_decide = op.merge("decide_inputs", to_decide, products.chunks)
        # ("decide", DecideInput | CatalogChunk)
    return op.stateful_batch("decide", to_decide, partial(
        DecideLogic, config.shards + address_shards(config.shards), config.recommendations,
        catalog=config.catalog.enabled, max_products=config.catalog.max_products))
    # ("decide", Decision), in (due, customer, trigger, stage) order; erasures for the ledger


def decision_log(decided: KeyedStream[Decision], config: Config,
                 sink: Sink[Any] | None) -> None:
    """Steps `decisions`, `decision_lines`, `decision_log`."""
    decisions = op.filter_map("decisions", decided, steps.decision)
    # Decision (not erasures)
    fmt, out = _shaped("decisions", sink, partial(decisions_sink, config), decision_line)
    op.output("decision_log", op.map("decision_lines", decisions, fmt), out)


def shard_outputs(shards: KeyedStream[ShardOutput], program: Program, config: Config,
                  segment_sink: Sink[Any] | None, outcome_sink: Sink[Any] | None) -> None:
    """Segment changes, outcomes and the profile view, each where the config sends it."""
    outputs = config.outputs
    if program.segments and (segment_sink is not None or outputs.segments):
        changes = op.flat_map("segment_changes", shards, steps.segment_changes)
        # SegmentChange, per customer in event-time order
        fmt, sink = _shaped("segments", segment_sink, partial(
            lines_sink, config, outputs.segments, config.kafka.segments_topic), segment_line)
        op.output("segment_out", op.map("segment_lines", changes, fmt), sink)
    if outcome_sink is not None or outputs.outcomes:
        results = op.flat_map("outcomes", shards, steps.outcomes)
        # Outcome
        out_fmt, out_sink = _shaped("outcomes", outcome_sink, partial(
            lines_sink, config, outputs.outcomes, config.kafka.outcomes_topic), outcome_line)
        op.output("outcome_out", op.map("outcome_lines", results, out_fmt), out_sink)
    if outputs.profiles:
        writes = op.flat_map("profile_writes", shards, steps.profile_writes)
        # ("profiles", ProfileWrite)
        op.output("profiles", writes, ProfileSink(outputs.profiles))


def render_and_deliver(decided: KeyedStream[Decision], config: Config,
                       email_sink: Sink[Any] | None) -> Stream[DeadLetter]:
    """Steps `sent`, `render`, `rendered_ok`, `render_dead_letters`, `deliver`; returns the
    renders that failed."""
    sent = op.filter("sent", decided, steps.sent)
    # ("decide", Decision) with outcome "sent", or an erasure for the ledger
    rendered = op.map("render", sent, steps.Render(config))
    # ("decide", Email | Erasure | DeadLetter)
    split = op.branch("rendered_ok", rendered, steps.rendered_ok)
    op.output("deliver", split.trues, email_sink or _email_sink(config))
    return op.map("render_dead_letters", split.falses, steps.dead_letter)


def dead_letter_out(bad: Stream[DeadLetter], config: Config,
                    dead_letter_sink: Sink[Any] | None) -> None:
    """Steps `dead_letter_lines`, `dead_letter_out`: to a file, or the dead-letter topic
    (which takes the records as they are)."""
    if dead_letter_sink is None and config.outputs.dead_letters == "kafka":
        dead_letter_sink = dead_letters_sink(config)
    fmt, sink = _shaped("dead_letters", dead_letter_sink, partial(dead_letters_sink, config),
                        dead_letter_line)
    op.output("dead_letter_out", op.map("dead_letter_lines", bad, fmt), sink)


def _email_sink(config: Config) -> Sink[Any]:
    from nudge.flows.deliver import DeliverySink

    dl = config.outputs.dead_letters
    path = None if dl == "kafka" else Path(dl).with_suffix(".delivery.jsonl")
    return DeliverySink(config, path)


def build_flow(config: Config, *, source: Source[Any] | None = None,
               sink: Sink[Any] | None = None, catalog_feed: Source[Any] | None = None,
               dead_letter_sink: Sink[Any] | None = None, email_sink: Sink[Any] | None = None,
               segment_sink: Sink[Any] | None = None, outcome_sink: Sink[Any] | None = None,
               ) -> Dataflow:
    """The dataflow for `config`: the configured Kafka topic, or `source`, in (and the
    catalog feed of `[catalog]`, or `catalog_feed`); the decision log to `outputs.decisions`
    as JSON lines, or Decision records to `sink`. A bad config raises ConfigError here,
    naming the key (nudge/state/program.py).

    Tests put sinks in place of the configured outputs: `dead_letter_sink` gets DeadLetter
    records, `email_sink` ("decide", Email | Erasure) pairs (and renders even when
    `delivery.transport` is "none"), `segment_sink` and `outcome_sink` SegmentChange and
    Outcome records."""
    program = compile_program(config)
    activate(config.secrets)  # log ids keyed before any step prints one
    exchange.register()  # records cross workers pickled in C (nudge/flows/exchange.py)
    if source is None:
        from nudge.kafka.source import KafkaEventSource

        source = KafkaEventSource(config.kafka, config.events)
    flow = Dataflow("nudge")
    parsed = read_and_parse(flow, source, config)
    bad = parsed.dead
    products = None
    if config.catalog.enabled:
        products = catalog(flow, catalog_feed or catalog_source(config), config)
        bad = op.merge("input_dead_letters", bad, products.dead)
    people = customers(parsed, program, config)
    shards = people.outputs
    decided = decide(shards, check_addresses(shards, config), products, config)
    decision_log(decided, config, sink)
    shard_outputs(shards, program, config, segment_sink, outcome_sink)
    bad = op.merge("with_identity_dead_letters", bad, people.dead)
    if config.delivery.transport != "none" or email_sink is not None:
        bad = op.merge("all_dead_letters", bad, render_and_deliver(decided, config, email_sink))
    # else a dry run (shadow mode): the decision log only, nothing rendered or sent
    dead_letter_out(bad, config, dead_letter_sink)
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
