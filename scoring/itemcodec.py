"""ItemModel's snapshot form: plain data, compact, canonical.

The decide step is snapshotted every epoch, so the model's state is written often. Every
product id is written once (a sorted table) and referred to by index; neighbour rows are
packed arrays (int32 indices, float64 weights: weights must come back bit for bit); category
names are a table too. Everything is written in sorted order, so two models with the same
state give equal snapshots whatever order their dicts were filled in.

>>> rows = {"a": {"b": 2.0}, "b": {"a": 2.0}}
>>> info = {p: ItemInfo(p, p.upper(), 1.0, "x", "", "") for p in "ab"}
>>> snap = encode_model(rows, {}, info, {"a": 5, "b": 7}, {"a": [0, 1, 0, 0]})
>>> snap["ids"], snap["categories"]
(['a', 'b'], ['x'])
>>> decode_model(snap) == (rows, {}, info, {"a": 5, "b": 7}, {"a": [0, 1, 0, 0]})
True
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

from scoring.itemstats import ItemInfo

Row = dict[str, float]


def _pack(values: array) -> bytes:
    if sys.byteorder == "big":  # snapshots are little-endian everywhere
        values = array(values.typecode, values)
        values.byteswap()
    return values.tobytes()


def _unpack(typecode: str, data: bytes) -> array:
    values = array(typecode)
    values.frombytes(data)
    if sys.byteorder == "big":
        values.byteswap()
    return values


def _pack_rows(rows: dict[str, Row], index: dict[str, int]) -> list[bytes]:
    heads, lens, nbrs = array("i"), array("i"), array("i")
    weights = array("d")
    for a in sorted(rows):
        row = rows[a]
        heads.append(index[a])
        lens.append(len(row))
        for b in sorted(row):
            nbrs.append(index[b])
            weights.append(row[b])
    return [_pack(heads), _pack(lens), _pack(nbrs), _pack(weights)]


def _unpack_rows(packed: list[bytes], ids: list[str]) -> dict[str, Row]:
    heads, lens, nbrs = (_unpack("i", b) for b in packed[:3])
    weights = _unpack("d", packed[3])
    rows: dict[str, Row] = {}
    pos = 0
    for head, n in zip(heads, lens, strict=True):
        rows[ids[head]] = {ids[nbrs[i]]: weights[i] for i in range(pos, pos + n)}
        pos += n
    return rows


def encode_model(rows: dict[str, Row], pending: dict[str, Row],
                 catalogue: dict[str, ItemInfo], seen: dict[str, int],
                 counts: dict[str, list[int]]) -> dict[str, Any]:
    names: set[str] = set(catalogue) | set(seen) | set(counts)
    for table in (rows, pending):
        names.update(table)
        for row in table.values():
            names.update(row)
    ids = sorted(names)
    index = {p: i for i, p in enumerate(ids)}
    categories = sorted({i.category for i in catalogue.values()})
    cat_index = {c: i for i, c in enumerate(categories)}
    return {
        "ids": ids,
        "categories": categories,
        "rows": _pack_rows(rows, index),
        "pending": _pack_rows(pending, index),
        "catalogue": [[index[p], i.name, i.price, cat_index[i.category], i.image_url, i.url]
                      for p, i in sorted(catalogue.items())],
        "seen": [[index[p], t] for p, t in sorted(seen.items())],
        "counts": [[index[p], *series] for p, series in sorted(counts.items())],
    }


def decode_model(snap: dict[str, Any]) -> tuple[dict[str, Row], dict[str, Row],
                                                dict[str, ItemInfo], dict[str, int],
                                                dict[str, list[int]]]:
    ids = [sys.intern(p) for p in snap["ids"]]
    categories = [sys.intern(c) for c in snap["categories"]]
    catalogue = {ids[i]: ItemInfo(ids[i], name, price, categories[c], image, url)
                 for i, name, price, c, image, url in snap["catalogue"]}
    seen = {ids[i]: t for i, t in snap["seen"]}
    counts = {ids[row[0]]: list(row[1:]) for row in snap["counts"]}
    return (_unpack_rows(snap["rows"], ids), _unpack_rows(snap["pending"], ids), catalogue,
            seen, counts)
