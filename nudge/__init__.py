"""Nudge: behavioural trigger emails from a shop's event stream, on Bytewax.

One package, in layers that import downwards only (checked by the import contracts in
pyproject.toml, `make lint`):

    tools/      the benchmark and the mypyc build                         (developer tools)
    app/        the `nudge` command: run, replay, demo, check, inspect, ...  (application)
    flows/      the Bytewax dataflow: parse -> route -> customers -> decide -> render -> deliver
    delivery/   senders and transports: ledger, retries, outbox, ESP, SMTP   (stages)
    templates/  Jinja2 email templates and the sandboxed renderer
    kafka/      the Kafka boundary: client config, source, producer, topic sinks
    sources/    file sources
    state/      per-customer records, journeys, segments, the shard, stores
    scoring/    experiments, item statistics, recommendations, the propensity model
    core/       records, configuration, errors, ids, event time              (foundation)
"""

__version__ = "0.1.0"
