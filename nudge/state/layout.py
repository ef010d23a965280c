"""Typed records of a customer's state, encoded as their declarations say.

A record class (nudge/state/customer.py) declares its fields once, as annotations; its
`__slots__` are those names. Compiled by mypyc (nudge/tools/native.py) it is a native class:
its fields live unboxed in the object, read without a dict or a descriptor lookup (measured,
2026-12-03: a journey-state update 10 ns against ~120 ns on a positional list or a msgspec
Struct, whose attributes compiled code reads through the generic attribute protocol).

`Codec` encodes records to MessagePack from those declarations, with nothing written per
field: a registered record is an extension value whose code names its class, holding its
fields as an array in name order (the same order for a compiled and a pure-Python class,
whatever order mypyc keeps them in). A change of any record's fields is a new format of the
record holding it (the format is the encoded record's first element, nudge/state/customer.py;
tests/test_customer_record.py pins the fields).
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec

# msgspec keeps its own extension codes below 0; application codes are 0-127
MAX_CODE = 127


def fields_of(cls: type) -> tuple[str, ...]:
    """A record class's fields, in the order they are encoded (by name)."""
    # mypyc keeps a native class's attributes as __mypyc_attrs__; Python has __slots__
    names = cls.__dict__.get("__mypyc_attrs__") or cls.__dict__["__slots__"]
    return tuple(sorted(n for n in names if not n.startswith("__")))


class Codec:
    """MessagePack for values holding registered records: `encode` and `decode` in one
    call each (msgspec's C encoder walks the containers; a record costs one hook call). A
    registered class's `__init__` takes every field in name order."""

    def __init__(self, records: dict[int, type]) -> None:
        self._get: dict[type, tuple[int, Callable[[Any], tuple[Any, ...]]]] = {}
        self._make: dict[int, tuple[type, tuple[str, ...]]] = {}
        for code, cls in records.items():
            if not 0 <= code <= MAX_CODE or code in self._make:
                raise ValueError(f"record code {code} of {cls.__name__}: taken or out of range")
            names = fields_of(cls)
            # attrgetter of one name gives the value, not a 1-tuple
            get = attrgetter(*names) if len(names) > 1 else (lambda o, n=names[0]: (getattr(o, n),))
            self._get[cls] = (code, get)
            self._make[code] = (cls, names)
        self._inner = msgspec.msgpack.Encoder()  # a record's fields (records do not nest)
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._record)
        self._decoder = msgspec.msgpack.Decoder(ext_hook=self._restore)
        self._fields = msgspec.msgpack.Decoder()

    def _record(self, obj: Any) -> msgspec.msgpack.Ext:
        entry = self._get.get(type(obj))
        if entry is None:
            raise TypeError(f"{type(obj).__name__} is not a registered record")
        code, get = entry
        return msgspec.msgpack.Ext(code, self._inner.encode(get(obj)))

    def _restore(self, code: int, data: memoryview) -> Any:
        entry = self._make.get(code)
        if entry is None:
            raise ValueError(f"unknown record code {code}")
        return entry[0](*self._fields.decode(data))

    def encode(self, value: Any) -> bytes:
        return self._encoder.encode(value)

    def decode(self, data: bytes) -> Any:
        return self._decoder.decode(data)


def assign(obj: Any, names: tuple[str, ...], values: list[Any]) -> None:
    """Set `names` of `obj` to `values` (a compiled class checks each value's type)."""
    if len(values) != len(names):
        raise ValueError(f"{type(obj).__name__}: {len(values)} values for {len(names)} fields")
    for name, value in zip(names, values, strict=True):
        setattr(obj, name, value)
