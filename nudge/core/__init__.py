"""The foundation every stage imports: records, configuration, errors, ids, event time.

    records.py        the typed records that flow between steps (decisions, emails...)
    events.py         the event contract's records (Kind, Event, Product); deadletter.py
    config.py         the configuration, loaded and checked once; each key declared once
                      (configspec: the declarations' types; configtable; journeyconfig,
                      deliveryconfig, serveconfig)
    errors.py         the error tree: everything a user can cause is a NudgeError
    ids.py            stable ids: key digests, log ids without personal data
    timefmt.py        event time: instants, durations, ISO 8601
    metrics.py        Prometheus counters
    compiled.py       which modules run compiled (mypyc), and the stale-build guard

Nothing here imports a stage (the import contracts in pyproject.toml keep it so).
"""
