"""What a handler of `nudge serve` sees and returns: plain data, no web framework, so the
handlers are tested without a server and the framework stays behind nudge/serve/asgi.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


class Unavailable(Exception):
    """The broker did not acknowledge: the client should retry (503)."""


@dataclass(frozen=True, slots=True)
class Incoming:
    method: str
    path: str
    params: dict[str, str]  # path parameters ({token})
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass(frozen=True, slots=True)
class Outgoing:
    status: int
    body: bytes = b""
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Outgoing:
    return Outgoing(status, orjson.dumps(doc), "application/json", headers or {})


def error(status: int, code: str, message: str, **extra: str) -> Outgoing:
    """Segment's SDKs read `code` and `message` from an error answer."""
    return json(status, {"success": False, "code": code, "message": message}, extra or None)
