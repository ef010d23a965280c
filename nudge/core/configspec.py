"""Config declared once: every key is a field of a frozen dataclass with its type, its default
and its doc. Reading a table, the errors that name the key path, and the reference in
docs/configuration.md (nudge/tools/configdoc.py) are all derived from these declarations.

The types a key may have:

    bool, str, int, float     TOML's own (a float key also takes an integer)
    Duration                  '500ms', '30s', '30m', '24h', '7d' -> milliseconds
    Clock                     a local time '21:00' -> minutes after midnight
    Literal["a", "b"]         one of the choices
    Positive, NonNegative     integers >= 1, >= 0 (or any `Annotated[..., Bound(...)]`)
    Fraction                  a number between 0 and 1
    tuple[str, ...]           a list of strings
    tuple[tuple[str, str], ...]   a table of string values (e.g. librdkafka properties)
    tuple[SomeConfig, ...]    an array of tables, each read as SomeConfig
    SomeConfig                a sub-table (a frozen dataclass declared the same way)

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Caps:
...     window: Duration = setting(86_400_000, "how long a cap counts")
...     mode: Literal["hard", "soft"] = setting("hard", "what a cap does")
>>> read(Caps, Table({"window": "1h"}, "caps"))
Caps(window=3600000, mode='hard')
>>> read(Caps, Table({"mode": "firm"}, "caps"))
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config caps.mode: must be one of hard, soft; got 'firm'
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from nudge.core.configtable import Table
from nudge.core.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Bound:
    """A numeric range: `lo <= value <= hi`, either end open (strict) or absent."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def problem(self, value: float) -> str | None:
        low = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        return None if low and high else f"must be {self.text()}, got {value}"

    def text(self) -> str:
        if self.hi is None:
            return f"more than {_num(self.lo)}" if self.lo_open else f"at least {_num(self.lo)}"
        if self.lo is None:
            return f"less than {_num(self.hi)}" if self.hi_open else f"at most {_num(self.hi)}"
        if self.lo_open != self.hi_open:
            return (f"{'more than' if self.lo_open else 'at least'} {_num(self.lo)} and "
                    f"{'less than' if self.hi_open else 'at most'} {_num(self.hi)}")
        return (f"between {_num(self.lo)} and {_num(self.hi)}"
                + (" (exclusive)" if self.lo_open else ""))


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and x == int(x) else str(x)


@dataclass(frozen=True, slots=True)
class NonEmpty:
    """A string or list that must not be empty; `reason` is the error (and the doc's note)."""

    reason: str


class Unit:
    """Marks how a key's TOML text becomes its value (see Duration and Clock)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


DURATION = Unit("duration")
CLOCK = Unit("clock")

Duration = Annotated[int, DURATION]  # milliseconds
PositiveDuration = Annotated[int, DURATION, Bound(lo=0, lo_open=True)]
Clock = Annotated[int, CLOCK]  # minutes after local midnight
Positive = Annotated[int, Bound(lo=1)]
NonNegative = Annotated[int, Bound(lo=0)]
Fraction = Annotated[float, Bound(0, 1)]


def setting(default: Any = dataclasses.MISSING, doc: str = "", *,
            parse: Callable[[Table, str], Any] | None = None, kind: str = "",
            named: bool = False, key: bool = True, factory: Callable[[], Any] | None = None,
            shown: str = "") -> Any:
    """A key's declaration: its default (none: required), its doc (one sentence or two, for
    users), and optionally a bespoke `parse(table, name)` with the `kind` the docs show,
    `named` for a table of user-named sub-tables (`[triggers.<name>]`), `key=False` for a
    field that is not read from the file (a trigger's name), `shown` for the docs' default."""
    meta = {"doc": doc, "parse": parse, "kind": kind, "named": named, "key": key,
            "shown": shown}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, doc: str) -> Any:
    """A sub-table declared by its own dataclass."""
    return setting(doc=doc, factory=cls)


@dataclass(frozen=True, slots=True)
class Key:
    """One declared key, ready to read: what `read` does for it and what the docs say."""

    name: str
    doc: str
    base: Any  # the type without its Annotated extras
    unit: Unit | None
    bound: Bound | None
    nonempty: NonEmpty | None
    default: Any  # dataclasses.MISSING: required
    factory: Any
    parse: Callable[[Table, str], Any] | None
    kind: str
    named: bool
    shown: str

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING and self.factory is dataclasses.MISSING

    def default_value(self) -> Any:
        return self.factory() if self.factory is not dataclasses.MISSING else self.default

    def item(self) -> type | None:
        """The dataclass of a sub-table, or of each table in an array or named table."""
        if isinstance(self.base, type) and dataclasses.is_dataclass(self.base):
            return self.base
        args = get_args(self.base)
        if get_origin(self.base) is tuple and args and isinstance(args[0], type) \
                and dataclasses.is_dataclass(args[0]):
            return args[0]
        return None

    def read(self, t: Table) -> Any:
        name = self.name
        if name not in t.data:
            if self.required:
                raise ConfigError(t.key(name), self.nonempty.reason if self.nonempty
                                  else "required (this table needs it)")
            t.seen.add(name)
            return self.default_value()
        value = self.parse(t, name) if self.parse else self._convert(t, name)
        if self.bound is not None and (problem := self.bound.problem(value)):
            raise ConfigError(t.key(name), problem)
        if self.nonempty is not None and not value:
            raise ConfigError(t.key(name), self.nonempty.reason)
        return value

    def _convert(self, t: Table, name: str) -> Any:
        base = self.base
        if self.unit is DURATION:
            return t.duration(name, 0)
        if self.unit is CLOCK:
            return _clock(t, name)
        if base in (bool, str, int):
            return t.get(name, base, None)
        if base is float:
            return float(t.get(name, (int, float), None))
        origin, args = get_origin(base), get_args(base)
        if origin is Literal:
            return t.choice(name, args, "")
        if dataclasses.is_dataclass(base):
            return read(base, t.table(name))  # type: ignore[arg-type]
        if origin is tuple and args == (str, ...):
            return t.strings(name, ())
        if origin is tuple and args == (tuple[str, str], ...):
            table = t.get(name, dict, None)
            return tuple(sorted((str(k), str(v)) for k, v in table.items()))
        item = self.item()
        if item is not None:  # an array of tables
            path = t.key(name)
            return tuple(read(item, Table(v, f"{path}[{i}]"))
                         for i, v in enumerate(t.get(name, list, None)))
        raise TypeError(f"config key {name}: no reader for {base!r}")


def _clock(t: Table, name: str) -> int:
    value = t.get(name, str, None)
    try:
        hours, minutes = (int(x) for x in value.split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise ConfigError(t.key(name),
                          f"expected a local time like '21:00', got {value!r}") from None
    return hours * 60 + minutes


T = TypeVar("T")
_KEYS: dict[type, tuple[Key, ...]] = {}


def keys(cls: type) -> tuple[Key, ...]:
    """The declared keys of a config dataclass, in declaration order (computed once)."""
    found = _KEYS.get(cls)
    if found is not None:
        return found
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("key", True):
            continue
        hint, extras = hints[f.name], ()
        if get_origin(hint) is Annotated:
            hint, *rest = get_args(hint)
            extras = tuple(rest)
        out.append(Key(
            name=f.name, doc=f.metadata.get("doc", ""), base=hint,
            unit=_extra(extras, Unit), bound=_extra(extras, Bound),
            nonempty=_extra(extras, NonEmpty),
            default=f.default, factory=f.default_factory, parse=f.metadata.get("parse"),
            kind=f.metadata.get("kind", ""), named=f.metadata.get("named", False),
            shown=f.metadata.get("shown", "")))
    found = _KEYS[cls] = tuple(out)
    return found


def _extra(extras: tuple[Any, ...], kind: type[T]) -> T | None:
    return next((x for x in extras if isinstance(x, kind)), None)


def read(cls: type[Any], t: Table, **given: Any) -> Any:
    """An instance of `cls` from a table: each declared key read and checked, `given` values
    (read by the caller) taken as they are, then the class's own cross-key `problems()`, then
    the check that every key of the table was understood."""
    values = dict(given)
    for key in keys(cls):
        if key.name not in given:
            values[key.name] = key.read(t)
    obj = cls(**values)
    problems: Callable[[], Iterable[tuple[str, str]]] | None = getattr(obj, "problems", None)
    if problems is not None:
        for name, reason in problems():
            raise ConfigError(t.key(name), reason)
    t.done()
    return obj
