"""Secrets: the keys that sign tokens and salt log ids, read from the environment or files.

The config names where each key lives, never the key itself:

    [secrets]
    signing_key = "k2"            # signs every new token
    rotation_window = "30d"       # a retired key still verifies this long after `retired`
    log_id_key = "logs"           # salts log ids (default: the signing key)

    [secrets.keys.k2]
    env = "NUDGE_KEY_K2"          # or file = "/run/secrets/nudge-k2"
    [secrets.keys.k1]
    file = "/run/secrets/nudge-k1"
    retired = "2026-11-01T00:00:00Z"   # when it stopped signing

Without a `[secrets]` table the keyring holds the public demo key: fine for the demo, the
outbox and tests, refused by `nudge run` and `nudge check` for a transport that sends real
email (`refuse_demo_secrets`).

>>> ring = Keyring({"k1": b"x" * 32, "k2": b"y" * 32}, signing_id="k2",
...                retired={"k1": 1_000}, rotation_window=500)
>>> ring.secret_for("k1", now=1_400) == b"x" * 32
True
>>> ring.secret_for("k1", now=1_600)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
nudge.core.keyring.RetiredKeyError: key 'k1' retired at 1970-01-01T00:00:01Z and ...
>>> ring
Keyring(signing='k2', keys=['k1', 'k2'], demo=False)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from nudge.core.configspec import Duration, read, setting
from nudge.core.configtable import Table
from nudge.core.errors import ConfigError, NudgeError
from nudge.core.ids import use_log_key
from nudge.core.timefmt import parse_duration, parse_iso, to_iso

DEMO_KEY_ID = "demo"
# Public on purpose: anyone can forge a token signed with it. Only the demo, the outbox and
# tests run on it; `refuse_demo_secrets` keeps it away from real email.
DEMO_SECRET = b"nudge-demo-key-public-never-use-it-to-send-real-email"
MIN_SECRET_BYTES = 32
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
REAL_EMAIL = ("esp", "smtp", "kafka")


class UnknownKeyError(NudgeError):
    """A token names a key id the keyring does not hold."""


class RetiredKeyError(UnknownKeyError):
    """A token's key was retired longer ago than the rotation window."""


def _iso(t: Table, name: str) -> int:
    text = t.get(name, str, "")
    try:
        return parse_iso(text)
    except ValueError:
        raise ConfigError(t.key(name), f"expected an ISO time like '2026-11-01T00:00:00Z', "
                                       f"got {text!r}") from None


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """Where one key lives: an environment variable or a file (exactly one)."""

    id: str = setting("", key=False)
    env: str = setting("", "The environment variable that holds the key.")
    file: str = setting("", "Or: the file that holds it (a trailing newline is ignored).")
    retired: int | None = setting(
        None, "When it stopped signing (ISO time); it verifies for `rotation_window` more.",
        parse=_iso, kind="ISO time", shown="(in use)")

    def problems(self) -> Iterator[tuple[str, str]]:
        if bool(self.env) == bool(self.file):
            yield "env", "set exactly one of env (a variable's name) or file (a path)"


def _keys(t: Table, name: str) -> tuple[KeyConfig, ...]:
    table = t.table(name)
    for k in table.data:
        if not KEY_ID.fullmatch(k):
            raise ConfigError(table.key(k), "a key id is 1-32 letters, digits, '-' or '_'")
    keys = tuple(read(KeyConfig, table.table(k), id=k) for k in sorted(table.data))
    table.done()
    return keys


@dataclass(frozen=True, slots=True)
class SecretsConfig:
    signing_key: str = setting(
        "", "The key (of `secrets.keys`) that signs new tokens; empty: the public demo key, "
            "refused for real email.")
    keys: tuple[KeyConfig, ...] = setting(
        (), "Keys, each `[secrets.keys.<id>]` with `env` or `file`, and `retired` once "
            "replaced.", parse=_keys, named=True)
    rotation_window: Duration = setting(
        parse_duration("30d"), "How long after `retired` a key still verifies tokens.")
    log_id_key: str = setting("", "The key that keys log ids; empty: the signing key.")
    unsubscribe_lifetime: Duration = setting(
        parse_duration("400d"), "An unsubscribe token expires this long after its email's "
                                "due time.")
    tracking_lifetime: Duration = setting(
        parse_duration("90d"), "Open and click tokens expire this long after the email's due "
                               "time.")

    @property
    def demo(self) -> bool:
        return not self.signing_key

    def problems(self) -> Iterator[tuple[str, str]]:
        ids = {k.id for k in self.keys}
        if self.keys and not self.signing_key:
            yield "signing_key", "not set: name the key (of secrets.keys) that signs new tokens"
        if self.signing_key and self.signing_key not in ids:
            yield "signing_key", f"{self.signing_key!r} is not in secrets.keys"
        if any(k.id == self.signing_key and k.retired is not None for k in self.keys):
            yield "signing_key", f"{self.signing_key!r} is retired; a retired key only verifies"
        if self.log_id_key and self.log_id_key not in ids:
            yield "log_id_key", f"{self.log_id_key!r} is not in secrets.keys"


class Keyring:
    """Key material by id. Never printed: its repr lists ids only."""

    __slots__ = ("_secrets", "demo", "log_id_key", "retired", "rotation_window", "signing_id")

    def __init__(self, secrets: Mapping[str, bytes], *, signing_id: str,
                 retired: Mapping[str, int] | None = None, rotation_window: int = 0,
                 log_id_key: str = "", demo: bool = False) -> None:
        self._secrets = dict(secrets)
        self.signing_id = signing_id
        self.retired = dict(retired or {})
        self.rotation_window = rotation_window
        self.log_id_key = log_id_key or signing_id
        self.demo = demo

    def __repr__(self) -> str:
        return f"Keyring(signing={self.signing_id!r}, keys={sorted(self._secrets)}, " \
               f"demo={self.demo})"

    @property
    def signing_secret(self) -> bytes:
        return self._secrets[self.signing_id]

    def secret_for(self, key_id: str, *, now: int) -> bytes:
        """The key that verifies a token signed with `key_id` at `now` (ms)."""
        secret = self._secrets.get(key_id)
        if secret is None:
            raise UnknownKeyError(f"unknown key id {key_id[:40]!r}")
        retired = self.retired.get(key_id)
        if retired is not None and now > retired + self.rotation_window:
            raise RetiredKeyError(f"key {key_id!r} retired at {to_iso(retired)} and its rotation "
                                  f"window ended at {to_iso(retired + self.rotation_window)}")
        return secret

    def log_salt(self) -> bytes:
        """A key for log ids, derived (not the signing key itself, so a log id never helps
        anyone compute a token)."""
        return hmac.digest(self._secrets[self.log_id_key], b"nudge log ids", "sha256")


DEMO_KEYRING = Keyring({DEMO_KEY_ID: DEMO_SECRET}, signing_id=DEMO_KEY_ID, demo=True)


def load_keyring(config: SecretsConfig, env: Mapping[str, str] | None = None) -> Keyring:
    """Read every configured key from its variable or file; the demo keyring without any.
    A missing, short or demo key is a ConfigError naming its config key."""
    if config.demo:
        return DEMO_KEYRING
    environ = os.environ if env is None else env
    secrets = {}
    for k in config.keys:
        where = f"secrets.keys.{k.id}"
        if k.env:
            value = environ.get(k.env, "")
            origin, path = f"environment variable {k.env}", f"{where}.env"
            if not value:
                raise ConfigError(path, f"environment variable {k.env} is not set")
            secret = value.strip().encode()
        else:
            origin, path = f"file {k.file}", f"{where}.file"
            try:
                secret = Path(k.file).read_bytes().strip()
            except OSError as exc:
                raise ConfigError(path, f"cannot read {k.file}: {exc.strerror}") from None
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(path, f"{origin} holds {len(secret)} bytes; a key needs at least "
                                    f"{MIN_SECRET_BYTES} (e.g. `openssl rand -base64 32`)")
        if hmac.compare_digest(secret, DEMO_SECRET):
            raise ConfigError(path, f"{origin} holds the public demo key")
        secrets[k.id] = secret
    return Keyring(secrets, signing_id=config.signing_key,
                   retired={k.id: k.retired for k in config.keys if k.retired is not None},
                   rotation_window=config.rotation_window, log_id_key=config.log_id_key)


def activate(config: SecretsConfig) -> Keyring:
    """Load the keyring and key this process's log ids with it (nudge/core/ids.py)."""
    keyring = load_keyring(config)
    use_log_key(keyring.log_salt())
    return keyring


def refuse_demo_secrets(config: SecretsConfig, transport: str) -> None:
    """`nudge run` and `nudge check`: a transport that sends real email needs real keys
    (the demo key lets anyone forge any customer's unsubscribe link)."""
    if transport in REAL_EMAIL and config.demo:
        raise ConfigError("secrets.signing_key", f"not set, and delivery.transport = "
                                                 f"{transport!r} sends real email: configure "
                                                 "[secrets] with keys from env or files "
                                                 "(the demo key lets anyone forge tokens)")


def fingerprint(secret: bytes) -> str:
    """A short public digest of a key, to tell keys apart in `nudge check` output."""
    return hashlib.sha256(b"nudge key fingerprint" + secret).hexdigest()[:8]
