"""Stable experiment assignment: variants and holdouts from a keyed hash of the customer id.

Assignment must not move between processes, restarts or Python versions, so it hashes with
BLAKE2b (never `hash()`, which is salted per process). Each use has its own BLAKE2b
personalisation, so a customer's variant, bucket and holdout membership are independent of
each other.

Variants use weighted rendezvous hashing: every variant draws its own uniform u from
(customer, experiment, variant name), and the customer goes to the variant with the largest
`weight / -ln(u)`. That is an exponential race, so a variant wins with probability
weight / sum(weights) (weights need not sum to 1). Because each variant's draw depends only on
its own name, adding a variant moves only the customers who now win it (the fewest possible:
nobody moves between the old variants), and removing one moves only its own customers. The
order of the list does not matter except to break an exact tie (first wins).

>>> bucket("c42", "subject-line")
0.11218337569845493
>>> [pick_variant(c, "subject-line", [("control", 1), ("emoji", 1)]) for c in ("c42", "ann")]
['emoji', 'control']
>>> in_holdout("ann", "cart", 0.1), in_holdout("ann", "cart", 0.9)
(False, True)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

_SCALE = 2.0 ** -53


def _unit(person: bytes, *parts: str) -> float:
    """A uniform float in [0, 1) from the parts: 53 bits of BLAKE2b, so every value is exact.

    Each part is length-prefixed, so ("ab", "c") and ("a", "bc") hash differently."""
    h = hashlib.blake2b(digest_size=8, person=person)
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(4, "big"))
        h.update(data)
    return (int.from_bytes(h.digest(), "big") >> 11) * _SCALE


def bucket(customer_id: str, experiment: str) -> float:
    """The customer's position in [0, 1) for `experiment`, uniform over customers.

    For simple range splits (`bucket(...) < 0.2`); `pick_variant` uses its own draws."""
    return _unit(b"nudge.bucket", experiment, customer_id)


def pick_variant(customer_id: str, experiment: str,
                 variants: Sequence[tuple[str, float]]) -> str:
    """The customer's variant: weighted, stable, minimal movement when variants change.

    A variant of weight 0 is never picked (a paused arm keeps its customers' draws: giving it
    weight again brings back the same customers). Raises ValueError for no variant with a
    positive weight, a negative or non-finite weight, or a repeated name.
    """
    best_name: str | None = None
    best = -1.0
    seen: set[str] = set()
    for name, weight in variants:
        if name in seen:
            raise ValueError(f"variant {name!r} is listed twice")
        seen.add(name)
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"variant {name!r} has weight {weight!r}: use a finite weight >= 0")
        if weight == 0:
            continue
        # u in (0, 1): the half step keeps log() away from 0 and -ln(u) away from 0.
        u = _unit(b"nudge.variant", experiment, name, customer_id) + _SCALE / 2
        score = weight / -math.log(u)
        if score > best:
            best_name, best = name, score
    if best_name is None:
        raise ValueError(f"experiment {experiment!r} has no variant with a positive weight")
    return best_name


def in_holdout(customer_id: str, journey: str, share: float) -> bool:
    """Whether the customer is in `journey`'s holdout (a `share` in [0, 1] of customers).

    Independent of the variant draws, and nested: raising the share only adds customers."""
    return _unit(b"nudge.holdout", journey, customer_id) < share
