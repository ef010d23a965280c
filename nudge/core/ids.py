"""Stable hashes: shard routing, log-safe customer ids, experiment buckets.

Python's `hash()` is salted per process, so nothing here uses it: a shard assignment is
stored schema (recovery state is keyed by shard) and must be the same in every process.

>>> shard_of("customer-42", 64)
21
>>> len(log_id("customer-42"))
12
"""

from __future__ import annotations

import hashlib
import zlib


def shard_of(customer_id: str, shards: int) -> int:
    """The shard that owns a customer: crc32 of the UTF-8 id modulo the shard count."""
    return zlib.crc32(customer_id.encode()) % shards


def log_id(customer_id: str) -> str:
    """A short keyed-free digest of a customer id, safe to print in logs (no personal data)."""
    return hashlib.blake2b(customer_id.encode(), digest_size=6).hexdigest()


def message_key(message_id: str) -> int:
    """A 64-bit digest of a `messageId`, kept for de-duplication instead of the string."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big")
