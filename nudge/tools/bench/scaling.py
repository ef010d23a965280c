"""How `nudge run --bounded` grows with processes, alone (a slice of `make bench`):

    python -m nudge.tools.bench.scaling [--events 50000] [--customers 5000] [--repeat 3]
        [--processes 1,2] [--profile all|lean] [--transport none|kafka]

One topic on the tansu broker; runs of 1, 2 ... processes alternate (a loaded machine's
drift hits each alike), start-up measured on a 1,000-event topic and taken out. Prints for
each process count the medians of wall time and CPU (all processes, and the busiest one),
the speed-up over one process by wall clock and by the busiest process's CPU (what bounds a
cluster on idle cores), and whether the decisions (sorted) equal the one process's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nudge.tools.bench.broker import generate, produce, start_broker
from nudge.tools.bench.stats import load_average, median, ratio, steady_rate
from nudge.tools.bench.whole import Run, nudge_run, write_config

DATA = Path("var/bench")
STARTUP_EVENTS = 1_000


def _runs(conf: Path, out: Path, processes: int, repeat: int) -> list[Run]:
    return [nudge_run(conf, out, processes=processes) for _ in range(repeat)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.tools.bench.scaling")
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--customers", type=int, default=5_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--profile", default="all", choices=("all", "lean"))
    ap.add_argument("--transport", default="none", choices=("none", "kafka"))
    args = ap.parse_args(argv)
    counts = [int(p) for p in args.processes.split(",")]

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"events-{args.events}-{args.customers}.jsonl"
    generate(data, args.events, args.customers)
    events = sum(1 for _ in data.open("rb"))
    print(f"scaling {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {events:,} events, "
          f"{args.customers:,} customers, profile {args.profile}, transport {args.transport}; "
          f"{load_average()}")
    proc, bootstrap = start_broker()
    try:
        stamp = str(int(time.time()))
        topic, small = f"scale-events-{stamp}", f"scale-startup-{stamp}"
        produce(bootstrap, topic, data, args.partitions)
        produce(bootstrap, small, data, args.partitions, limit=STARTUP_EVENTS)
        root = DATA / "scaling"
        root.mkdir(parents=True, exist_ok=True)
        runs: dict[int, list[Run]] = {n: [] for n in counts}
        boots: dict[int, list[Run]] = {n: [] for n in counts}
        for _ in range(args.repeat):
            for n in counts:  # alternate: each count sees the same drift of the load
                name = f"{args.profile}-{args.transport}-{n}p"
                conf = write_config(root / f"{name}.toml", root / name, args.profile,
                                    args.transport, bootstrap, topic)
                conf_s = write_config(root / f"{name}-s.toml", root / f"{name}-s",
                                      args.profile, args.transport, bootstrap, small)
                boots[n] += _runs(conf_s, root / f"{name}-s", n, 1)
                runs[n] += _runs(conf, root / name, n, 1)
                r = runs[n][-1]
                print(f"  {n} process(es): {r.seconds:6.2f} s wall, CPU {r.cpu:6.2f} s "
                      f"(busiest {r.cpu_max:6.2f} s)", flush=True)
    finally:
        proc.kill()
        proc.wait()
    base = counts[0]
    rows = {}
    for n in counts:
        wall = median([r.seconds for r in runs[n]])
        boot = median([r.seconds for r in boots[n]])
        busiest = median([r.cpu_max for r in runs[n]]) - median([r.cpu_max for r in boots[n]])
        cpu = median([r.cpu for r in runs[n]]) - median([r.cpu for r in boots[n]])
        rows[n] = (steady_rate(events, wall, boot), busiest, cpu, wall)
    one = sorted(runs[base][0].decisions)
    print(f"{'processes':>9} {'events/s':>10} {'wall s':>7} {'CPU s':>7} {'busiest':>8} "
          f"{'x wall':>7} {'x CPU':>6}  decisions   (start-up taken out; medians)")
    for n, (rate, busiest, cpu, wall) in rows.items():
        same = sorted(runs[n][0].decisions) == one
        print(f"{n:>9} {rate:>10,.0f} {wall:>7.2f} {cpu:>7.2f} {busiest:>8.2f} "
              f"{ratio(rate, rows[base][0]):>6.2f}x {ratio(rows[base][1], busiest):>5.2f}x  "
              f"{len(runs[n][0].decisions):,} {'identical' if same else 'DIFFER'}")
    print(load_average())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
