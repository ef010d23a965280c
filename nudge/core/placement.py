"""Where Bytewax puts a state key, and key names that spread evenly over any worker count.

Bytewax 0.21.1 places a stateful step's key on worker `h % workers` (workers of every
process, process 0's first), where `h` is Rust's `DefaultHasher` (SipHash-1-3, keys 0, 0) of
the key as a `str` (its UTF-8 bytes then 0xFF); and writes a snapshot to recovery partition
`seahash(step id, key) % partitions` (both strings hashed the same way, through the
`seahash` crate's `SeaHasher`). `worker_of` and `recovery_part_of` compute the same in
Python; tests/test_placement.py checks both against a real Bytewax run.

Plain names (`shard-0000`...) hash like random numbers: 16 of them fall 13 to 3 on two
workers. `placed_key(kind, index)` appends the least number `n` that makes the key's hash
equal `index` modulo 5040 (divisible by every worker count from 1 to 10 and 12, 14, 15, 16,
18, 20, 24...), so index `i` lands on worker `i % workers` for all of those counts: 16
shards go 8/8 on two workers, 4/4/4/4 on four. Other counts get the hash's usual spread.
Finding `n` takes about 5,040 hashes on average; `_TABLE` keeps the answers for the
indices a flow normally has (regenerate with `python -m nudge.core.placement`, checked by
the tests), any other index is searched once per process.

The names are stored schema (recovery state is keyed by them): nudge/app/migrate.py moves
state kept under the earlier plain names.
"""

from __future__ import annotations

import base64
import functools
import struct
from typing import Final

_M: Final = (1 << 64) - 1
RESIDUES: Final = 5040  # lcm(1..10) = 7!: every worker count that divides it is exact


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & _M


def _sip_round(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & _M
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & _M
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & _M
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & _M
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash13(data: bytes) -> int:
    """SipHash-1-3 with the keys (0, 0): Rust's `DefaultHasher::default()`."""
    v0, v1, v2, v3 = 0x736F6D6570736575, 0x646F72616E646F6D, 0x6C7967656E657261, 0x7465646279746573
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
        v0 ^= m
    last = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= last
    v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    v0 ^= last
    v2 ^= 0xFF
    for _ in range(3):
        v0, v1, v2, v3 = _sip_round(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def _diffuse(x: int) -> int:
    x = (x * 0x6EED0E9DA4D94A4F) & _M
    x ^= (x >> 32) >> (x >> 60)
    return (x * 0x6EED0E9DA4D94A4F) & _M


def seahash(data: bytes) -> int:
    """SeaHash (the `seahash` crate, 4.x) with its default seeds."""
    lanes = [0x16F11FE89B0D677C, 0xB480A793D8E6C86C, 0x6FE2E5AAF078EBC9, 0x14F994A4C5259381]
    for n, i in enumerate(range(0, len(data), 8)):
        lanes[n % 4] = _diffuse(lanes[n % 4] ^ int.from_bytes(data[i:i + 8], "little"))
    a, b, c, d = lanes
    return _diffuse(a ^ b ^ c ^ d ^ len(data))


def _key_hash(key: str) -> int:
    return siphash13(key.encode() + b"\xff")


def worker_of(key: str, workers: int) -> int:
    """The worker (0-based, over every process) Bytewax 0.21.1 gives a state key."""
    return _key_hash(key) % workers


def recovery_part_of(step_id: str, key: str, parts: int) -> int:
    """The recovery partition Bytewax 0.21.1 writes a snapshot of (step id, key) to."""
    return seahash(step_id.encode() + b"\xff" + key.encode() + b"\xff") % parts


def plain_key(kind: str, index: int) -> str:
    """The earlier name of a key (before placement): `shard-0003`."""
    return f"{kind}-{index:04d}"


def search_suffix(kind: str, index: int) -> int:
    """The least `n` for which `kind-NNNN-n` hashes to `index` modulo RESIDUES."""
    want = index % RESIDUES
    base = plain_key(kind, index) + "-"
    n = 0
    while _key_hash(f"{base}{n}") % RESIDUES != want:
        n += 1
    return n


# kind -> the suffixes of indices 0, 1, ... as little-endian uint16, base64 (generated).
_TABLE: Final[dict[str, str]] = {
    "shard": (
        "PxAYKYsK7S/UBHcJ1QMvCZI1xwYlKPUFDQLUBdYAEnRKHzMdkBL/EcEgdA1WJ0cDZRJUA3AVGylHA74E"
        "2gOwAXcRGwqHF0sTTiIkG+wEWgr+AhIOuhabND0H6BO8CL0HIAMIBB4T0xRPAxAaVgFOI/oKGSw1CU0O"
        "qRm4B5oZMArYCfgA9B+WGrIlVS1CIYoKqwgiBzAJZBPHGqMSNxJYEjAIDArBDsMO6iqLDSsNmRE1CT8I"
        "aQddHXoCigN2G+IKTAr2AfYPPTvlC7sqrwMKQ1wIsQUSBB4ApCWKCgwASh2aDMwPzBpwAm8fUA81CcAI"
        "/BBWBnAAsgXkVkYO5wgPDNQA4BU/AIcH+A7oF+ADVwe6DJsa9w7FDpIbYCPfIaEUCh8WA+YHXQhMAYow"
        "cAtZAAAP5gCdGLQWLAvDJaAWGBWhDPIbYwHgCV4JvgulGN8C7wX8DQYA/R5dDbwErhF/AScrRhDHCM4I"
        "3VH5Deoc0gGsACslmg6aAR812BskBHEMNwamCr8k0gnOBc8GiAJ2DDoN1gSaFeseswfqG3IIpQI2DPsY"
        "9Ap/BMcAOAd/B5EU3i/KHdkBoBObEH4Q0wa4A7cYIgMWN6UU3hRcC6MGlyNNHy4OZQVxB+Y91wOnD+kT"
        "YwT0FNAE1R88I+4F2xSoDicZSANpHL0XwUBiCLcIqh8CAkAF6xc6D+YBlwWFAmM4kwLxGw4LPwILJSIN"
        "ygRyCZ0Uig2SES880QNIEBUJfQErEX8uAQUxAfEUCQ9dEo8IggRyCOwCbT+FAtxCrAUyCbghmjWZF6kT"
        "xAtzFBMCQwFCNgImjwNCDr8H6UrhDQsS4AR5Nd0nBgZUJvUCoQbIAW8EkC+mB74k1yelAgQECggsMrcG"
        "tgoaBysKvChvH0IKgwt4VwYj+imlC0kTRQhQAZAHZANLcxMH/R/RH1cE7wyoDmkWsBKiWV0jrQqGEIYP"
        "3R2nBt4YOSi7BB4L9BLpAkIJ1Sf6AW8IDAW1AQ8MVQWHFoYJvAQYH1oMlEEZEEofoxJAGZcAggxrA3II"
        "LRcKDagLFAeQEmsoewAfDsoU4jKcEAYCqQVPD+wLWQXZCSEOeQysJzsFVhxWDYEkqihCAIIApgvxCgYk"
        "TQLMDzgThBgFAzcAKTMGICcRBQrRBGw4OQZ8BS4ArQe0QhEoMgrrGq4JBwSlFG0CyglhEUArkh6xNKgC"
        "uQaQFzQEMw1gAHsC9Ar4F5M9kRL9HFMMsS4NBxYl3xRpF49IuBZUCm0NVyxDFzwBKgC9DIwDCgVkAj4g"
        "1R5yKxcBSgE0B9MHVSIHG2cHywnbAD0I6QoTDJQOzxXiCqQSUBTrAlxbFyKMBnADhQ81FYYBEgZ9Bl8F"
        "2gCDEf4FRAvgAfEO2jXlB+gCOQExCBcPwwAfI2QPLQ6DAeUAvB5fRWQ9DgpAAusbDhptBeoOtwelKS8C"
        "FSGOA20AkoHoBcou3gzlAgAHGQS2A7M/mhNIKZoJ1Q87DngFthLWDa4nPUdfHt0JnwExAXcqSwkXDnQD"
        "pAubFM0OFBNqOVAWkRbqca8VBQD2DucdWg6kD89MPwJjFZAOGwGeGl0NIge8AuIDkASRBHRkswIaAGc8"
        "uBjIE+QGXQ2hLzwMSgTBEEMHvwapBwgWZBn8GmwJtACcN3sEggDfAW0ABgPdDHUKOARnAXELWAXZBJVI"
        "XATjMRoEUitxGhwGwAbeNE0C2B64AORVEQUOEWsIwBekBQgAbgmHFEMUoBoKEgcCABTfHzsQMBeEBKUp"
        "WlY8EiQB7jkXGXMBgA3WF/cjlykUB84AmichKo4/UybiAxYJhQMqAyIGDRk2Aq0dcxcHCRsjdwquISUa"
        "nB1mDjUZbQGnDkQDxA8pC5YAkQeXDxUEPC2PM5YILRL7Cewb1ySMBKQcki14IBcIfQA0BU4ZOhIRANYM"
        "8Ag0BBEB/jkYKpgLhhXXReUTzwmnCMAM8AMoC0sO+SYDDxAE4wN5Cx0P/RgcATwE7AIuBREOIBEmC9wO"
        "aBMbAVICWw2RDQ4pUQN1CgUW1RgREXwrfRCrGhIvdgLlKL4L9w0nIPwoERcvAPsebCQ7A6QGZyZlDdYW"
        "DAqsA/4hsg7tLm8F2hdFBZcF9hlQLMQCpBauBqwNbzrsBWgE/xf0AHEE5gFaBDoHjBAYAb4c8xpdA98A"
        "qE/cOLsCeRAuDpkDYwxrBLMI/CykKK4JIRGpBogSDgUGENgAbQgfIRAGoRYuD5EAKlhqA44TWQFTBVIP"
        "wB6rEkgIlwm8JFwAlRI9Cq0exgQpAFYd3xx/D6kB2SIJFcEG/TRWFrAPcgXMCkcDs1psDhAHpgThAiUw"
        "0g72AhkKJAFJGFIB9QUlBkgFVgd9Go0HNhmdF4kGeA3sDHALkAI+K+tH6VDsLFpZkBXiBmEdwQTRG8YK"
        "RQzVB9QNCDJMIfsGwyfzBYQMCAxvAtAE5AMnKFYEeiVUEacNyBODGOoR7zJ2BPBEyANFLy4LIwNKCNgW"
        "swibGgsU/gmmLakddQNiAyEAUSH/GS0TZCZhDJogpDcMBQUdhD9XF5MFnxp2JJwGbACbBIIXCAWKB2AF"
        "HAzTGYEDFiXcFikDFwdcEvkG3QChB9IJihGsF1kLiScYAP0ZowWfYT8IKgEjBnEKDR6JALoN4ABgCAIJ"
        "0wikFNEDNh+UD1k57QnPAEQQGxP4CHgo/iNdAy8PeBmYDfoQwRGFDyUkWgPpVaAI+hnDC8weXwAREO8C"
        "bQO7DTEetws="
    ),
    "links": (
        "rwnsGlAwwB71J4AKCwOOHn8SmhPLBeIYRy1IGgEpcynUIW8SoRdcJQEahxPmDNpGjSMkA1EW2AUxDRsP"
        "BgNoA1gDHiklDMIpEhwHCAUT+QHVFf4RJBfIF+oPjwfgBmYScibHBaIJbASwO+IU8BxDBmwctwV2CJoI"
        "bgO0B+M44QU="
    ),
    "identity": (
        "mwE0HHcP9xchFAQAkkRUBp8EGwUcECQCDwFqLRwSGQeYCeslTBS+D6oEAzVEGqIEagISA/wWgwZfEqUK"
        "Ng36AwUJEDQ3F7EAewK5BhwdZh8sAbsFBCL2AR4jzQFALcoEgBKlET0F2gjBMfkLuTe/D+QOehMeAYMu"
        "5AjuBLAk7wI="
    ),
}
KINDS: Final = {"shard": 1024, "links": 64, "identity": 64}  # indices kept in _TABLE


def _table(kind: str) -> tuple[int, ...]:
    raw = base64.b64decode(_TABLE.get(kind, ""))
    return struct.unpack(f"<{len(raw) // 2}H", raw)


_TABLES: Final = {kind: _table(kind) for kind in KINDS}


@functools.cache
def _searched(kind: str, index: int) -> int:
    return search_suffix(kind, index)


def placed_key(kind: str, index: int) -> str:
    """The state key of index `index` of `kind` ("shard", "links", "identity"): on worker
    `index % workers` for every worker count dividing RESIDUES. Stored schema."""
    table = _TABLES.get(kind, ())
    n = table[index] if index < len(table) else _searched(kind, index)
    return f"{plain_key(kind, index)}-{n}"


def _generate() -> str:
    lines = ["_TABLE: Final[dict[str, str]] = {"]
    for kind, count in KINDS.items():
        suffixes = [search_suffix(kind, i) for i in range(count)]
        text = base64.b64encode(struct.pack(f"<{count}H", *suffixes)).decode()
        chunks = [text[i:i + 80] for i in range(0, len(text), 80)]
        lines.append(f'    "{kind}": (')
        lines.extend(f'        "{c}"' for c in chunks)
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(_generate())
