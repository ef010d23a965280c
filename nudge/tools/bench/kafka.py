"""The Kafka half of the report: baselines behind the same consumer, then `nudge run
--bounded` as whole processes (one, and a 2-process cluster) on the same topic, start-up
subtracted, with the ratios of issue 17's targets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nudge.tools.bench import child
from nudge.tools.bench.broker import produce, start_broker
from nudge.tools.bench.stats import median, ratio, steady_rate, verdict
from nudge.tools.bench.whole import Run, nudge_run, write_config

STARTUP_EVENTS = 1_000
SHORT_RUN_S = 60.0  # runs shorter than this are repeated and their median kept

# (profile, transport, what the report calls it)
CASES = (("lean", "none", "cart journey alone, decisions only"),
         ("all", "none", "demo config, decisions only"),
         ("all", "kafka", "demo config, + render + Kafka emails"))


@dataclass
class Medians:
    seconds: float  # wall clock, process start to exit
    cpu: float  # CPU seconds of its processes
    cpu_max: float  # CPU seconds of its busiest process
    first: float  # wall clock to the first records read
    first_cpu: float  # CPU seconds to the first records read
    rss_mb: float  # the largest peak RSS of the runs
    run: Run  # the first run (its decisions)


def _nan_median(values: list[float]) -> float:
    real = [v for v in values if not math.isnan(v)]
    return median(real) if real else float("nan")


def _median_runs(once: Callable[[], Run], repeat: int) -> Medians:
    """Medians over up to `repeat` runs: a run longer than SHORT_RUN_S is not repeated."""
    runs = [once()]
    while len(runs) < repeat and runs[0].seconds < SHORT_RUN_S:
        runs.append(once())
    return Medians(median([r.seconds for r in runs]), _nan_median([r.cpu for r in runs]),
                   _nan_median([r.cpu_max for r in runs]),
                   _nan_median([r.first_records for r in runs]),
                   _nan_median([r.first_cpu for r in runs]), max(r.rss_mb for r in runs),
                   runs[0])


def report(data: Path, events: int, customers: int, partitions: int, repeat: int,
           out_root: Path) -> None:
    proc, bootstrap = start_broker()
    try:
        stamp = str(int(time.time()))
        topic, small = f"bench-events-{stamp}", f"bench-startup-{stamp}"
        secs = produce(bootstrap, topic, data, partitions)
        produce(bootstrap, small, data, partitions, limit=STARTUP_EVENTS)
        print(f"kafka input (tansu on loopback, {partitions} partitions; produced in "
              f"{secs:.1f} s; start-up measured on a {STARTUP_EVENTS:,}-event topic; medians "
              f"of up to {repeat} runs):")
        out_root.mkdir(parents=True, exist_ok=True)
        rates: dict[str, float] = {}
        cpu_rates: dict[str, float] = {}  # events per CPU second, start-up apart
        for what, extra in (("consume + orjson.loads (floor)", ()),
                            ("consume + hand-written single loop, cart only", ("hand",))):
            # the consumer's own start (connect, first fetch) taken out like Nudge's
            starts = [child("programs", "kafka_consume_parse", bootstrap, small, *extra)
                      for _ in range(max(repeat, 3))]
            wholes = [child("programs", "kafka_consume_parse", bootstrap, topic, *extra)
                      for _ in range(repeat)]
            start = median([r["seconds"] for r in starts])
            whole = median([r["seconds"] for r in wholes])
            rates[what] = steady_rate(events, whole, start)
            cpu_rates[what] = steady_rate(events, median([r["cpu_seconds"] for r in wholes]),
                                          median([r["cpu_seconds"] for r in starts]))
            print(f"  {what:<58} {rates[what]:>9,.0f} ev/s steady ({whole:.2f} s; start "
                  f"{start:.2f} s; {cpu_rates[what]:,.0f} ev/s of CPU)")
        hand_rate = rates["consume + hand-written single loop, cart only"]
        hand_cpu_rate = cpu_rates["consume + hand-written single loop, cart only"]
        steady: dict[str, float] = {}
        busiest: dict[str, float] = {}
        decisions: dict[str, list[bytes]] = {}
        firsts: list[tuple[float, float]] = []
        for processes in (1, 2):
            if processes == 2:
                print("  2-process cluster (nudge run --process-id i --addresses a;b), "
                      "the same topic:")
            for profile, transport, what in CASES:
                if processes == 2 and profile == "lean":
                    continue
                name = f"{profile}-{transport}-{processes}p"
                conf = write_config(out_root / f"{name}.toml", out_root / name, profile,
                                    transport, bootstrap, topic)
                conf_s = write_config(out_root / f"{name}-startup.toml",
                                      out_root / f"{name}-startup", profile, transport,
                                      bootstrap, small)
                boot = _median_runs(partial(
                    nudge_run, conf_s, out_root / f"{name}-startup", processes=processes),
                    max(repeat, 3))
                if processes == 1:
                    firsts.append((boot.first, boot.first_cpu))
                full = _median_runs(partial(
                    nudge_run, conf, out_root / name, processes=processes), repeat)
                rate = steady_rate(events, full.seconds, boot.seconds)
                steady[name] = rate
                # CPU of the busiest process, start-up apart: what bounds a cluster on idle
                # cores; a loaded machine gives two processes two time slices, so their
                # wall-clock speed-up there overstates what the second core would give
                busiest[name] = full.cpu_max - boot.cpu_max
                cpu_rates[name] = steady_rate(events, full.cpu, boot.cpu)
                decisions[name] = sorted(full.run.decisions)
                print(f"  Nudge run --bounded, {what:<37} {rate:>9,.0f} ev/s steady "
                      f"({events / full.seconds:,.0f} whole process, {full.seconds:.2f} s, "
                      f"CPU {full.cpu:.1f} s, busiest process {full.cpu_max:.1f} s; start-up "
                      f"{boot.seconds:.2f} s, CPU {boot.cpu:.1f} s; peak RSS "
                      f"{full.rss_mb:,.0f} MB; decisions {len(full.run.decisions):,})")
        _targets(steady, busiest, cpu_rates, (hand_rate, hand_cpu_rate), decisions, firsts)
    finally:
        proc.kill()
        proc.wait()


def _targets(steady: dict[str, float], busiest: dict[str, float], cpu_rates: dict[str, float],
             hand: tuple[float, float], decisions: dict[str, list[bytes]],
             firsts: list[tuple[float, float]]) -> None:
    lean, lean_cpu = steady["lean-none-1p"], cpu_rates["lean-none-1p"]
    rows = [
        ("0. lean vs the hand-written loop (steady)", ratio(lean, hand[0]),
         ratio(lean_cpu, hand[1]), 0.85),
        ("1. demo, decisions only, vs lean", ratio(steady["all-none-1p"], lean),
         ratio(cpu_rates["all-none-1p"], lean_cpu), 0.50),
        ("1. demo, + render + Kafka emails, vs lean", ratio(steady["all-kafka-1p"], lean),
         ratio(cpu_rates["all-kafka-1p"], lean_cpu), 0.35),
    ]
    print("targets (issue 17; by wall clock, and by CPU seconds in brackets):")
    for what, value, by_cpu, target in rows:
        print(f"  {what:<52} {value:>7.1%} ({by_cpu:.1%})  target >= {target:.0%}: "
              f"{verdict(value, target)}")
    for transport in ("none", "kafka"):
        one, two = steady[f"all-{transport}-1p"], steady[f"all-{transport}-2p"]
        same = decisions[f"all-{transport}-1p"] == decisions[f"all-{transport}-2p"]
        speedup = ratio(two, one)
        what = "decisions only" if transport == "none" else "+ render + Kafka emails"
        print(f"  3. 2-process cluster vs 1 process, demo {what:<22} {speedup:>6.2f}x  "
              f"target >= 1.7x: {verdict(speedup, 1.7)}; decisions "
              f"{'identical' if same else 'DIFFER'} (sorted, "
              f"{len(decisions[f'all-{transport}-2p']):,}); by the busiest process's CPU "
              f"{ratio(busiest[f'all-{transport}-1p'], busiest[f'all-{transport}-2p']):.2f}x")
    for (first, first_cpu), (_, _, what) in zip(firsts, CASES, strict=False):
        print(f"  4. nudge run: start to the first records read, {what:<37} {first:>5.2f} s "
              f"(CPU {first_cpu:.2f} s)  target < 1 s: {verdict(first, 1.0, higher=False)}")
