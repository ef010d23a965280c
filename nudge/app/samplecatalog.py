"""The sample shop's products (the same for every seed) and its catalog feed, as a Google
Merchant CSV (nudge/data/catalog.csv: `python -m nudge.app.sample --catalog FILE`)."""

from __future__ import annotations

import random
from typing import Any

CATEGORIES = {
    "apparel": (["Linen Shirt", "Merino Sweater", "Denim Jacket", "Rain Parka", "Wool Scarf",
                 "Cotton Tee", "Chino Trousers", "Silk Blouse"], (19, 180)),
    "shoes": (["Leather Sneakers", "Trail Runners", "Chelsea Boots", "Canvas Slip-ons",
               "Suede Loafers"], (45, 220)),
    "kitchen": (["Ceramic Pour-Over Set", "Cast Iron Skillet", "Chef's Knife", "Oak Cutting Board",
                 "Espresso Cups (4)", "Linen Tea Towels"], (12, 160)),
    "home": (["Wool Throw", "Stoneware Vase", "Linen Duvet Cover", "Scented Candle",
              "Table Lamp"], (18, 240)),
    "beauty": (["Rose Face Oil", "Clay Mask", "Hand Cream Trio", "Bamboo Hairbrush"], (9, 65)),
    "outdoor": (["Insulated Bottle", "Daypack 22L", "Camping Mug", "Merino Beanie",
                 "Trekking Poles"], (15, 140)),
    "books": (["The Slow Kitchen", "Field Guide to Birds", "Atlas of Islands",
               "Notes on Craft"], (12, 45)),
    "toys": (["Wooden Train Set", "Stacking Rings", "Puzzle 1000", "Plush Fox"], (10, 80)),
}


def _catalogue() -> list[dict[str, Any]]:
    rng = random.Random(1)  # the catalogue is the same for every seed
    items = []
    n = 0
    for category, (names, (lo, hi)) in CATEGORIES.items():
        for name in names:
            for variant in ("", " (Sand)", " (Navy)", " (Olive)"):
                n += 1
                pid = f"sku-{n:04d}"
                items.append({"product_id": pid, "name": name + variant,
                              "price": round(rng.uniform(lo, hi), 2), "category": category,
                              "image_url": f"https://shop.example/img/{pid}.jpg",
                              "url": f"https://shop.example/p/{pid}"})
    return items


CATALOGUE = _catalogue()
# The Google Merchant feed columns of the demo's catalog (nudge/data/catalog.csv).
CATALOG_COLUMNS = ["id", "title", "price", "sale_price", "availability", "link", "image_link",
                   "product_type", "brand"]


def catalog_csv() -> str:
    """The shop's product feed for the sample's products, as a Google Merchant CSV: a few on
    sale, a few out of stock (never recommended)."""
    from nudge.sources.catalogfiles import csv_text

    rows = [{"id": p["product_id"], "title": p["name"], "price": f"{p['price']:.2f} EUR",
             "sale_price": f"{p['price'] * 0.8:.2f} EUR" if n % 9 == 4 else "",
             "availability": "out of stock" if n % 17 == 16 else "in stock",
             "link": p["url"], "image_link": p["image_url"], "product_type": p["category"],
             "brand": "Nudge Demo"}
            for n, p in enumerate(CATALOGUE)]
    return csv_text(rows, CATALOG_COLUMNS)

