"""Stable keys and hashes: customer keys, shard routing, log-safe customer ids, message and
email key digests. (Experiment buckets and holdouts hash in nudge/scoring/experiments.py.)

Python's `hash()` is salted per process, so nothing here uses it: a shard assignment is
stored schema (recovery state is keyed by shard) and must be the same in every process.

A log id is a keyed BLAKE2b of the customer id: without the key, a list of candidate ids
cannot be hashed to find whose log line it is. The key comes from the keyring
(`use_log_key`, called where a config is loaded: the flow and the command line); the same key
gives the same log ids across restarts. Until it is called, a random per-process key.

>>> use_log_key(b"k" * 32)
>>> log_id("customer-42")
'92024afa0340'
>>> use_log_key(b"j" * 32)
>>> log_id("customer-42")
'de6ec87410e5'
>>> user_key("c1"), user_key("anon:c1"), anonymous_key("c1")
('c1', 'user:anon:c1', 'anon:c1')
>>> key_digest("customer-42|cart_abandonment|1|1")
'68b46ec3482250abe8b77bced87896c8'
"""

from __future__ import annotations

import hashlib
import os
import zlib
from typing import Final

from nudge.core.placement import placed_key

# Anonymous ids and user ids are different namespaces: `anonymousId: "c1"` is not user c1.
# A customer key is the userId as it is (almost always), `user:` + the userId for the rare
# userId that itself starts with a reserved prefix, or `anon:` + the anonymousId: no two
# identifiers of different namespaces ever share a key, and nothing is rejected.
ANON_PREFIX: Final = "anon:"
USER_PREFIX: Final = "user:"
_RESERVED: Final = (ANON_PREFIX, USER_PREFIX)


def user_key(user_id: str) -> str:
    return USER_PREFIX + user_id if user_id.startswith(_RESERVED) else user_id


def anonymous_key(anonymous_id: str) -> str:
    return ANON_PREFIX + anonymous_id


def is_anonymous_key(key: str) -> bool:
    return key.startswith(ANON_PREFIX)


def anonymous_of(key: str) -> str:
    """The anonymousId of an anonymous customer key."""
    return key[len(ANON_PREFIX):]


def shard_of(identifier: str, shards: int) -> int:
    """The shard that owns a customer key, or (identity on) a user id or an anonymous id:
    crc32 of the UTF-8 text modulo the shard count. Stored schema, like `shard_key`.

    >>> shard_of("customer-42", 64)
    21
    """
    return zlib.crc32(identifier.encode()) % shards


def shard_key(shard: int) -> str:
    """The state key of a shard (customers, addresses, and any step keyed by customer shard):
    `shard-0003-1236`, placed so that shard `i` runs on worker `i % workers`
    (nudge/core/placement.py). Stored schema: recovery state is keyed by it."""
    return placed_key("shard", shard)


def links_key(shard: int) -> str:
    return placed_key("links", shard)


def identity_key(shard: int) -> str:
    return placed_key("identity", shard)


def user_of(key: str) -> str:
    """The userId of a user customer key (the inverse of user_key)."""
    return key[len(USER_PREFIX):] if key.startswith(USER_PREFIX) else key

_log_key = os.urandom(32)


def use_log_key(key: bytes) -> None:
    """Key log ids with `key` (the keyring's `log_salt()`) in this process from now on."""
    global _log_key  # noqa: PLW0603 - one key per process, set once at start-up
    _log_key = key[:64]  # BLAKE2b takes a key of up to 64 bytes


def log_id(customer_id: str) -> str:
    """A short keyed digest of a customer id, safe to print in logs (no personal data)."""
    return hashlib.blake2b(customer_id.encode(), digest_size=6, key=_log_key).hexdigest()


def key_digest(key: str) -> str:
    """32 hex characters of SHA-256 of an email's idempotency key: the key as it leaves
    Nudge (Message-ID, the ESP's Idempotency-Key and `nudge_key`, the X-Nudge-Key header,
    outbox file names), stable across runs and free of the customer id."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def message_key(message_id: str) -> int:
    """A 64-bit digest of a `messageId`, kept for de-duplication instead of the string."""
    return int.from_bytes(hashlib.blake2b(message_id.encode(), digest_size=8).digest(), "big")
