"""`python -m nudge.tools.bench`: the report (see nudge/tools/bench/__init__.py)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nudge.tools import native
from nudge.tools.bench import child, kafka
from nudge.tools.bench.broker import generate
from nudge.tools.bench.programs import DATA, PROFILES
from nudge.tools.bench.stats import load_average


def _line(name: str, r: dict[str, float], events: int | None = None) -> str:
    n = events or int(r["events"])
    return f"  {name:<58} {n / r['seconds']:>9,.0f} ev/s {r['seconds']:>7.2f} s  " \
           f"peak RSS {r['rss_mb']:>6,.0f} MB"


def _details(r: dict[str, float]) -> None:
    parts = [f"decisions {int(r['decisions']):,}"]
    if r.get("emails"):
        parts.append(f"emails {int(r['emails']):,}")
    if r.get("segment_changes"):
        parts.append(f"segment changes {int(r['segment_changes']):,}")
    if r.get("model_count"):
        parts.append(f"model: progressive ROC AUC {r.get('model_auc', float('nan')):.3f}, "
                     f"log loss {r.get('model_log_loss', float('nan')):.4f} (base rate "
                     f"{r.get('model_prior_log_loss', float('nan')):.4f}) over "
                     f"{int(r['model_count']):,} examples")
    print("    " + "; ".join(parts))


def catalog_cost(lean: dict[str, float], with_catalog: dict[str, float]) -> float:
    """The lean run's extra CPU time with the catalog, as a share of the lean run's."""
    return with_catalog["cpu_seconds"] / lean["cpu_seconds"] - 1


def _clean(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _files(data: Path, customers: int, catalog_products: int) -> None:
    path = str(data)
    print("file input:")
    print(_line("read + orjson.loads (floor)", child("programs", "baseline_loads", path)))
    print(_line("read + Nudge parse/validate", child("programs", "baseline_parse", path)))
    print(_line("hand-written single loop, cart only", child("programs", "hand_loop", path)))
    lean = lean_catalog = None
    for profile, transport in (("lean", "none"), ("lean+catalog", "none"), ("lean", "outbox"),
                               ("default", "outbox"), ("all", "none"), ("all", "outbox")):
        out = DATA / f"replay-{profile}-{transport}"
        _clean(out)
        r = child("programs", "file_replay", path, str(out), transport, profile)
        what = "decisions only" if transport == "none" else "+ render + outbox"
        print(_line(f"Nudge, {profile} config, {what}", r))
        _details(r)
        if profile == "lean" and transport == "none":
            lean = r
        if profile == "lean+catalog":
            lean_catalog = r
    if lean is not None and lean_catalog is not None:
        print(f"  the catalog's cost on the lean run: {catalog_cost(lean, lean_catalog):+.1%} "
              "of its CPU time (the catalog input, its watermark and the decide step's join)")
    cm = child("programs", "catalog_memory", str(catalog_products))
    print(f"  catalog of {int(cm['products']):,} distinct products: holds "
          f"{cm['held_mb']:,.0f} MB of RSS ({cm['held_mb'] * 2**20 / cm['products']:,.0f} B a "
          f"product; catalog.max_products caps it), parse + apply "
          f"{cm['seconds'] / cm['events'] * 1e6:.1f} us an update, peak RSS "
          f"{cm['rss_mb']:,.0f} MB; its snapshot {cm['snapshot_mb']:,.0f} MB, "
          f"{cm['snapshot_first_s']:.2f} s the first time, {cm['snapshot_next_s'] * 1e3:.0f} ms "
          f"after one change (RSS with the snapshot's blobs {cm['held_with_snapshot_mb']:,.0f}"
          " MB)")
    dd = child("programs", "dedup_cost", path)
    share = f", {dd['seconds'] / lean['seconds']:.1%} of the lean run" if lean else ""
    print(f"  de-duplication by (customer, messageId) digest: "
          f"{dd['seconds'] / dd['events'] * 1e6:.2f} us/event{share} (keyed by the id "
          f"string alone: {dd['by_id_seconds'] / dd['events'] * 1e6:.2f} us/event)")
    if lean is not None:
        per_customer = (lean["rss_mb"] - lean["rss_base_mb"]) * 1024 * 1024 / customers
        print(f"  RSS per customer (lean): {per_customer:,.0f} B (peak {lean['rss_mb']:,.0f} MB "
              f"minus {lean['rss_base_mb']:,.0f} MB after imports)")
    print("configs: " + "; ".join(f"{k}: {v}" for k, v in PROFILES.items()))


def _memory(customers: int, products: list[int]) -> None:
    """Target 5: RSS per customer with the demo's configuration at three sizes, the profile
    view with customers, the item model with products."""
    print("memory, the demo's configuration replayed from a file, decisions only (per "
          "customer: above the RSS after imports; marginal: between two sizes):")
    print(f"  {'customers':>10} {'events':>10} {'peak RSS':>9} {'per customer':>13} "
          f"{'marginal':>9} {'profile view on disk':>21}")
    prev: tuple[int, float] | None = None
    for n in sorted({max(customers // 4, 100), max(customers // 2, 200), customers}):
        events = n * 11
        data = DATA / f"events-{events}-{n}.jsonl"
        generate(data, events, n)
        out = DATA / f"memory-{n}"
        _clean(out)
        r = child("memory", "demo_growth", str(data), str(out), str(n))
        # the slope between two sizes: what one more customer costs, fixed costs apart
        marginal = ((r["rss_mb"] - prev[1]) * 2**20 / (n - prev[0])) if prev else float("nan")
        prev = (n, r["rss_mb"])
        print(f"  {n:>10,} {events:>10,} {r['rss_mb']:>6,.0f} MB {r['rss_per_customer']:>11,.0f} B"
              f" {marginal:>7,.0f} B {r['profiles_bytes'] / 1e6:>10,.1f} MB "
              f"({r['profiles_bytes'] / n:,.0f} B each)")
    print("  the item model (hourly deltas of 14 days, skewed popularity):")
    print(f"  {'products':>10} {'known':>8} {'pairs':>9} {'traced':>9} {'snapshot':>9} "
          f"{'apply+seal':>10}")
    for n in products:
        m = child("memory", "item_model_growth", str(n))
        print(f"  {n:>10,} {int(m['known']):>8,} {int(m['pairs']):>9,} "
              f"{m['traced_bytes'] / 1e6:>6,.1f} MB {m['snapshot_bytes'] / 1e6:>6,.1f} MB "
              f"{m['seconds']:>8.1f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.tools.bench")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each short program; the report keeps their median")
    ap.add_argument("--products", default="1000,5000,20000",
                    help="catalogue sizes for the item model's growth")
    ap.add_argument("--catalog-products", type=int, default=1_000_000)
    ap.add_argument("--skip-files", action="store_true")
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-serve", action="store_true",
                    help="leave out nudge serve (nudge/tools/servebench.py)")
    args = ap.parse_args(argv)

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"events-{args.events}-{args.customers}.jsonl"
    generate(data, args.events, args.customers)
    events = sum(1 for _ in data.open("rb"))
    print(f"\nNudge benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
          f"{events:,} events, {args.customers:,} customers (python {sys.version.split()[0]} "
          f"at {sys.executable}, {os.cpu_count()} cpus)")
    print(f"{load_average()} at start")
    print("per-event path: " + (f"compiled with mypyc ({len(native.COMPILED)} modules, "
                                "nudge/tools/native.py)" if native.built() else "pure Python"))
    if not args.skip_files:
        _files(data, args.customers, args.catalog_products)
    if not args.skip_kafka:
        kafka.report(data, events, args.customers, args.partitions, args.repeat,
                     DATA / "kafka")
    if not args.skip_memory:
        _memory(args.customers, [int(p) for p in args.products.split(",") if p])
    if not args.skip_serve:
        # its own process: it starts the service, the flow and a broker of its own
        subprocess.run([sys.executable, "-m", "nudge.tools.servebench"], check=False)
    print(f"{load_average()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
