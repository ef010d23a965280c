"""How memory grows: RSS per customer with the demo's configuration, the profile view's size
on disk with customers, and the item model's size with products (each in its own process).
"""

from __future__ import annotations

import random
import resource
import time
import tracemalloc
from pathlib import Path

from nudge.tools.bench import programs


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def demo_growth(path: str, out: str, customers: str) -> dict[str, float]:
    """The demo's configuration replayed from the file, decisions only: peak RSS above the
    RSS after imports, per customer, and the profile view's RocksDB directory."""
    from nudge.scoring.propensity import PropensityModel

    PropensityModel()  # River, SciPy and NumPy load on the first model: not per customer
    r = programs.file_replay(path, out, "none", "all")
    grown = (r["rss_mb"] - r["rss_base_mb"]) * 1024 * 1024
    return {**r, "customers": float(customers), "rss_per_customer": grown / int(customers),
            "profiles_bytes": float(_dir_bytes(Path(out) / "profiles"))}


def item_model_growth(products: str, days: str = "14") -> dict[str, float]:
    """The item model fed hourly deltas of one shard over `days` days for a catalogue of
    `products`, with popularity skewed like a shop's (a few products take most views and
    baskets): products and pairs kept, traced Python memory and the snapshot's size."""
    import pickle

    from nudge.core.timefmt import DAY, HOUR
    from nudge.scoring.itemstats import ItemDelta
    from nudge.scoring.recommend import ItemModel

    n = int(products)
    rng = random.Random(n)
    ids = [f"p{i:07d}" for i in range(n)]
    cum: list[float] = []
    total = 0.0
    for i in range(n):
        total += 1.0 / (i + 1) ** 0.8
        cum.append(total)
    model = ItemModel()
    tracemalloc.start()
    seconds = 0.0  # applying and sealing only, not making the deltas
    end = 0
    # baskets per hour grow with the catalogue: a larger shop sells more products
    baskets = max(50, n // 20)
    for end in range(HOUR, int(days) * DAY + 1, HOUR):
        pairs: dict[tuple[str, str], float] = {}
        views: dict[str, int] = {}
        for basket in rng.choices(range(n), cum_weights=cum, k=baskets * 3):
            views[ids[basket]] = views.get(ids[basket], 0) + 1
        for _ in range(baskets):
            items = sorted({ids[i] for i in rng.choices(range(n), cum_weights=cum, k=3)})
            for i, a in enumerate(items):
                for b in items[i + 1:]:
                    pairs[(a, b)] = pairs.get((a, b), 0.0) + 1.0
        adds = {a: 1 for a, _ in list(pairs)[:baskets]}
        t = time.perf_counter()
        model.apply(ItemDelta(end, 0, pairs, views, adds, {}))
        model.seal(end)
        seconds += time.perf_counter() - t
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    size = model.size()
    return {"products": float(n), "known": float(size["products"]),
            "pairs": float(size["pairs"]), "traced_bytes": float(current),
            "snapshot_bytes": float(len(pickle.dumps(model.snapshot()))),
            "seconds": seconds, "end": float(end),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
