"""Scale in customers (issue 17, target 6): the cart journey alone over many distinct customers,
recovery off against recovery on (snapshots every 10 s, each shard's customers in its store
under recovery.dir), and the RSS of a large customer base of which a small part is active.

    python -m nudge.tools.bench.customers [--sizes 1000000,5000000] [--active 100000]
                                          [--repeat 1]

Each run is a process of its own reading JSONL files (4 partitions, customers split by id as
Kafka keys split them) through `nudge run`'s own runner (nudge/app/runflow.py `run_flow`: recovery
exactly as configured), decisions only. Its RSS is sampled while it runs: the peak, and the
median of the samples in the last fifth of the run (the active phase of the `active` input).
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import orjson

from nudge.tools.bench import child
from nudge.tools.bench.programs import DATA

PARTS = 4
T0 = 1_790_000_000_000  # 2026-09-21, ms
DAY = 86_400_000


def _iso(ms: int) -> str:
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def _part(cid: str) -> int:
    return hashlib.blake2b(cid.encode(), digest_size=2).digest()[0] % PARTS


def _identify(cid: str, ms: int, n: int) -> bytes:
    return orjson.dumps({"type": "identify", "userId": cid, "messageId": f"i{n}",
                         "timestamp": _iso(ms),
                         "traits": {"email": f"{cid}@example.com", "first_name": "Ann",
                                    "marketing_consent": True}})


def _track(event: str, cid: str, ms: int, n: int, sku: int) -> bytes:
    return orjson.dumps({"type": "track", "event": event, "userId": cid, "messageId": f"t{n}",
                         "timestamp": _iso(ms),
                         "properties": {"product_id": f"sku-{sku}", "name": f"Product {sku}",
                                        "price": 20.0, "quantity": 1,
                                        "url": f"https://shop.example/p/{sku}",
                                        "image_url": f"https://shop.example/i/{sku}.jpg"}})


def generate(directory: Path, customers: int, active: int) -> list[Path]:
    """The input, once per (customers, active): with `active` 0, `customers` distinct
    shoppers over 30 days, each an identify (consenting) then a cart add a minute later (2
    events a customer; every cart is abandoned). With `active` > 0, every customer's
    identify over 20 days, then `active` of them shopping for 10 days (views and cart adds,
    some orders; 20 events each)."""
    files = [directory / f"part-{i}.jsonl" for i in range(PARTS)]
    if all(f.exists() for f in files):
        return files
    directory.mkdir(parents=True, exist_ok=True)
    outs = [f.with_suffix(".tmp").open("wb") for f in files]
    n = 0
    span = 30 * DAY if not active else 20 * DAY
    step = max(span // customers, 1)
    for i in range(customers):
        cid = f"c{i:08d}"
        ms = T0 + i * step
        out = outs[_part(cid)]
        out.write(_identify(cid, ms, n) + b"\n")
        n += 1
        if not active:
            out.write(_track("Product Added", cid, ms + 60_000, n, i % 997) + b"\n")
            n += 1
    if active:
        start = T0 + span
        stride = max(customers // active, 1)
        per = 20
        gap = 10 * DAY // per
        for k in range(per):  # round after round over the active customers, in time order
            for j in range(active):
                cid = f"c{j * stride:08d}"
                ms = start + k * gap + j * (gap // active)
                event = ("Order Completed" if k % 10 == 9 else
                         "Product Added" if k % 3 == 1 else "Product Viewed")
                outs[_part(cid)].write(_track(event, cid, ms, n, (j + k) % 997) + b"\n")
                n += 1
    for out, f in zip(outs, files, strict=True):
        out.close()
        f.with_suffix(".tmp").replace(f)
    return files


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(directory: str, out: str, recovery: str, interval_ms: str = "10000") -> dict[str, float]:
    """One run, in this (fresh) process: the cart journey alone, decisions only, with
    recovery on (`recovery` "on": a new recovery.dir under `out`) or off."""
    import dataclasses

    from bytewax.recovery import init_db_dir

    from nudge.app.runflow import run_flow
    from nudge.flows.dataflow import build_flow
    from nudge.sources.files import JsonlSource
    from nudge.tools.bench.programs import _flow_config

    cfg = _flow_config(out, "lean", "none")
    if recovery == "on":
        rdir = Path(out) / "recovery"
        rdir.mkdir(parents=True)
        init_db_dir(rdir, 1)
        cfg = dataclasses.replace(cfg, recovery=dataclasses.replace(
            cfg.recovery, dir=str(rdir), snapshot_interval=int(interval_ms)))
    files = sorted(Path(directory).glob("part-*.jsonl"))
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    rss0 = _rss_mb()
    sampler.start()
    t = time.perf_counter()
    run_flow(build_flow(cfg, source=JsonlSource(files, cfg.events.batch_size)), config=cfg)
    seconds = time.perf_counter() - t
    done.set()
    sampler.join()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    tail = samples[len(samples) * 4 // 5:] or [_rss_mb()]
    store = Path(out) / "recovery"
    disk = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) if store.exists() \
        else 0
    events = sum(sum(1 for _ in f.open("rb")) for f in files)
    decisions = sum(1 for _ in (Path(out) / "decisions.jsonl").open("rb")) \
        if (Path(out) / "decisions.jsonl").exists() else 0
    return {"events": events, "seconds": seconds,
            "cpu_seconds": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
            "rss_mb": r1.ru_maxrss / 1024, "rss_base_mb": rss0,
            "rss_tail_mb": statistics.median(tail), "recovery_bytes": disk,
            "decisions": decisions}


def _clean(out: Path) -> None:
    import shutil

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def report(sizes: list[int], active: int, repeat: int = 1) -> None:
    print("scale in customers: the cart journey alone from JSONL files (4 partitions), "
          "decisions only, one process; recovery on = snapshots every 10 s, customers in "
          "each shard's store under recovery.dir")
    print(f"  {'input':<34} {'recovery':>8} {'time':>8} {'CPU':>8} {'ev/s':>8} "
          f"{'peak RSS':>9} {'late RSS':>9} {'recovery dir':>12}")
    for customers, act in [(n, 0) for n in sizes] + ([(max(sizes), active)] if active else []):
        data = generate(DATA / f"customers-{customers}-{act}", customers, act)
        what = (f"{customers:,} customers, 2 events each" if not act else
                f"{customers:,} customers, {act:,} active")
        off: dict[str, float] | None = None
        runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
        for _ in range(repeat):
            for mode in ("off", "on"):  # alternating: the machine's load hits both alike
                out = DATA / f"customers-run-{mode}"
                _clean(out)
                runs[mode].append(child("customers", "run", str(data[0].parent), str(out),
                                        mode))
        for mode in ("off", "on"):
            r = _median(runs[mode])
            extra = ""
            if mode == "off":
                off = r
            elif off is not None:
                extra = (f"  {r['seconds'] / off['seconds'] - 1:+.0%} time, "
                         f"{r['cpu_seconds'] / off['cpu_seconds'] - 1:+.0%} CPU")
            print(f"  {what:<34} {mode:>8} {r['seconds']:>7.1f}s {r['cpu_seconds']:>7.1f}s "
                  f"{r['events'] / r['seconds']:>8,.0f} {r['rss_mb']:>6,.0f} MB "
                  f"{r['rss_tail_mb']:>6,.0f} MB {r['recovery_bytes'] / 1e6:>9,.0f} MB{extra}")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="nudge.tools.bench.customers")
    ap.add_argument("--sizes", default="1000000,5000000",
                    help="distinct customers of the 2-events-each inputs")
    ap.add_argument("--active", type=int, default=100_000,
                    help="active customers of the largest size (0: leave that line out)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; medians kept")
    args = ap.parse_args(argv)
    DATA.mkdir(parents=True, exist_ok=True)
    report([int(s) for s in args.sizes.split(",") if s], args.active, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
