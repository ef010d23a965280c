"""The application: the `nudge` command and what its subcommands do outside the dataflow.

    cli.py            the command line: the parser and the entry point
    commands.py       the subcommands (run, replay, demo, check, inspect, recovery, dead-letters)
    runflow.py        running the dataflow: config, recovery, bounded replays, summaries
    inspection.py     `nudge inspect`: a customer's record and the model's report
    deadletters.py    `nudge dead-letters`: reading and summarising dead letters
    refeed.py         `nudge dead-letters replay`: fixed records back into the flow
    sample.py         the seeded sample shop behind `nudge demo` and the benchmark
    shoppers.py       one sample shopper's events; samplecatalog.py: the sample's products
"""
