"""`make bench`: throughput and memory of what users run, with baselines from the same run.

    python -m nudge.tools.bench [--events 1000000] [--customers 100000] [--repeat 3]
                                [--catalog-products 1000000] [--products 1000,5000,20000]
                                [--skip-files] [--skip-kafka] [--skip-memory] [--skip-serve]

Prints a report, the machine's load average first (a noisy report is recognisable):
  - file input (programs.py, each in a process of its own): read + orjson.loads (the floor),
    read + Nudge's parse and validation, a hand-written single loop with the cart semantics,
    and the dataflow replaying the file in four configs (programs.PROFILES), decisions only
    and with rendering; the catalog's cost on the lean run and the RSS of its products;
  - Kafka input (kafka.py, the tansu broker on loopback): the consumer alone and the
    hand-written loop behind it, then `nudge run --bounded` timed as a whole process
    (whole.py) for the cart journey alone and for the demo's configuration, decisions only
    and with rendering and emails to a topic. Each one's fixed start-up cost is measured on
    a 1,000-event topic and subtracted ("steady"); short runs are repeated and their median
    kept. Then the same as a 2-process cluster, with the decisions compared to the
    1-process run's, the time to the first records read, and the ratios of the issue's
    targets beside them;
  - memory (memory.py): RSS per customer with the demo's configuration, the profile view
    with customers, the item model with products;
  - `nudge serve` driven by a load generator (nudge/tools/servebench.py, which runs alone too).
Numbers are printed, never asserted: this is not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys


def child(module: str, fn: str, *args: str) -> dict[str, float]:
    """Run `nudge.tools.bench.<module>.<fn>(*args)` in a fresh process (its peak RSS is its
    own); it prints one JSON line."""
    code = (f"import sys, json; from nudge.tools.bench import {module}; "
            f"print(json.dumps({module}.{fn}(*sys.argv[1:])))")
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{fn} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
