"""Nudge: behavioural trigger emails from a shop's event stream, on Bytewax.

The data flow, one package per stage (see README.md):

    sources/   partitioned inputs (Kafka, JSONL files), each chunk carrying its watermark
    flows/     the Bytewax dataflow: parse -> route -> customers -> decide -> render -> deliver
    state/     per-customer records and journeys as pure functions; the RocksDB ledger
    templates/ Jinja2 email templates and the sandboxed renderer
    delivery/  transports: outbox folder, ESP HTTP API, SMTP, Kafka topic

`nudge` itself holds what every stage shares: the event and decision records, configuration,
the error tree and the command line.
"""

__version__ = "0.1.0"
