"""Reading TOML tables with key paths: typed getters that name the key that is wrong, and
a check that every key was understood (a typo must not silently fall back to a default).

>>> t = Table({"window": "1x"}, "caps")
>>> t.duration("window", 0)
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config caps.window: invalid duration '1x' (use e.g. 30m, 1h, 24h, 7d)
"""

from __future__ import annotations

from typing import Any

from nudge.core.errors import ConfigError
from nudge.core.timefmt import parse_duration


class Table:
    """A TOML table being read: typed getters that name the key path, and a check that
    every key was understood (a typo must not silently fall back to a default)."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(path, f"expected a table, got {type(data).__name__}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.seen.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if kind is not bool and isinstance(value, bool):
            raise ConfigError(self.key(name), f"expected {kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise ConfigError(self.key(name), f"expected {kind_name(kind)}, got {value!r}")
        return value

    def positive_int(self, name: str, default: int) -> int:
        value = self.get(name, int, default)
        if value < 1:
            raise ConfigError(self.key(name), f"must be at least 1, got {value}")
        return int(value)

    def duration(self, name: str, default: int) -> int:
        value = self.get(name, str, None)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ConfigError(self.key(name), str(exc)) from None

    def choice(self, name: str, options: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in options:
            raise ConfigError(self.key(name), f"must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(name, list, None)
        if value is None:
            return default
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.key(name)}[{i}]", f"expected a string, got {item!r}")
        return tuple(value)

    def table(self, name: str) -> Table:
        self.seen.add(name)
        return Table(self.data.get(name, {}), self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key (check the spelling)")


def kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", list: "a list",
             dict: "a table", float: "a number"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)
