"""A dead letter: an input or a send that could not be processed, with everything needed to
retry it, and its JSON line (both the current format and the older one without `raw_b64`)."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from nudge.core.events import Position

# What backslashreplace leaves for an undecodable byte.
_ESCAPED_BYTE = re.compile(r"\\x[0-9a-f]{2}")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An input or a send that could not be processed, kept with everything needed to retry."""

    stage: str
    reason: str
    detail: str
    position: Position | None
    raw: bytes

    def to_json(self) -> dict[str, object]:
        """One dead-letter line. `raw` is the bytes as text, for people and tools that read
        the file; it is the exact original whenever the bytes are valid UTF-8, and then
        `raw_b64` is null. When they are not, `raw` is lossy (backslashreplace: the byte 0xff
        and the four characters `\\xff` give the same text), so `raw_b64` holds the exact
        bytes. The key is always present: it tells this format from the older one."""
        out: dict[str, object] = {
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.position.source if self.position else None,
            "partition": self.position.partition if self.position else None,
            "offset": self.position.offset if self.position else None,
        }
        try:
            out["raw"] = self.raw.decode("utf-8")
            out["raw_b64"] = None
        except UnicodeDecodeError:
            out["raw"] = self.raw.decode("utf-8", "backslashreplace")
            out["raw_b64"] = base64.b64encode(self.raw).decode("ascii")
        return out

    @classmethod
    def from_json(cls, obj: Any) -> tuple[DeadLetter, bool]:
        """A dead-letter line back to the record, and whether `raw` is the original bytes.

        Lines written before `raw_b64` existed carry only the backslashreplace text. That
        text is the original when no `\\xNN` escape occurs in it (a decoding error always
        leaves one); otherwise the bytes may not be the original and `exact` is False.
        Lines with the key are exact: null means `raw` is the UTF-8 original.
        Raises ValueError, naming the field, for a line that is not a dead letter.
        """
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        for name in ("stage", "reason", "raw"):
            if not isinstance(obj.get(name), str):
                raise ValueError(f"field {name!r} is missing or not a string")
        detail = obj.get("detail")
        source, partition, offset = obj.get("source"), obj.get("partition"), obj.get("offset")
        position = None
        if source is not None:
            if not isinstance(source, str) or type(offset) is not int or \
                    (partition is not None and type(partition) is not int):
                raise ValueError("fields 'source', 'partition', 'offset' are not a position")
            position = Position(source, -1 if partition is None else partition, offset)
        text: str = obj["raw"]
        b64 = obj.get("raw_b64")
        if b64 is not None:  # not valid UTF-8: the exact bytes
            try:
                raw = base64.b64decode(b64, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ValueError("field 'raw_b64' is not base64") from None
            exact = True
        else:
            try:
                raw = text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: not written by to_json
                raise ValueError("field 'raw' is not encodable as UTF-8") from None
            exact = "raw_b64" in obj or _ESCAPED_BYTE.search(text) is None
        return cls(obj["stage"], obj["reason"], detail if isinstance(detail, str) else "",
                   position, raw), exact

