"""Consent that belongs to the address: the suppression list, and what events say about it.

A customer id is whatever a producer puts in an event; an address is a person's mailbox. So
an address that unsubscribed, hard-bounced, complained or was erased stays suppressed
whatever customer id later carries it: a new id that identifies with the same address and
`marketing_consent: true` does not bring it back.

- `changes(c, cid, ev, was)`: what one applied event says about an address (an
  AddressChange for the shard that owns the address), run by the customer's shard.
- `AddressBook`: the suppression list of one address shard, keyed by a digest of the
  normalised address (nudge/core/address.py: never the address itself), with per address:
  who unsubscribed (digests of customer ids) from what scope and when, when it hard-bounced,
  when it complained, when it was erased, and how many soft bounces it had.

What lifts what (README "Event contract"):
- an unsubscribe ("all" or a journey) is lifted only by an explicit later opt-in of the
  same customer id: `Subscribed` (every scope, or the one it names) or an identify with
  `marketing_consent: true` (the "all" unsubscribe);
- a hard bounce, a complaint and an erasure are never lifted by an event: the first says
  the mailbox does not exist, the other two that its owner wants no email from the shop.

>>> from nudge.core.records import AddressChange
>>> book = AddressBook()
>>> book.apply(AddressChange("victim@example.com", 10, "unsubscribe", "all", "D1"))
>>> book.blocks("victim@example.com", "cart_abandonment")
'address_suppressed'
>>> book.apply(AddressChange("victim@example.com", 20, "opt_in", "all", "D2"))  # another id
>>> book.blocks("victim@example.com", "cart_abandonment")
'address_suppressed'
>>> book.apply(AddressChange("victim@example.com", 30, "opt_in", "all", "D1"))  # the same one
>>> book.blocks("victim@example.com", "cart_abandonment") is None
True
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Final

from nudge.core.address import digest, normalised
from nudge.core.events import Event, Kind
from nudge.core.records import OUTCOME_SUPPRESSED, AddressChange, Decision
from nudge.state.customer import Customer

ADDRESS_SUPPRESSED: Final = "address_suppressed"

UNSUBSCRIBE: Final = "unsubscribe"
OPT_IN: Final = "opt_in"
BOUNCE: Final = "bounce"
SOFT_BOUNCE: Final = "soft_bounce"
COMPLAINT: Final = "complaint"
ERASE: Final = "erase"
EVERY_SCOPE: Final = "*"  # an opt-in that lifts every scope (`Subscribed` without a scope)

# An entry's positions: [unsubscribes, hard bounce, complaint, erasure, soft bounces].
# unsubscribes: {customer digest: {scope: event time}}; the others are event times (0: none).
_UNSUBS: Final = 0
_BOUNCED: Final = 1
_COMPLAINED: Final = 2
_ERASED: Final = 3
_SOFT: Final = 4


def customer_digest(customer_id: str) -> bytes:
    return hashlib.blake2b(customer_id.encode(), digest_size=16,
                           person=b"nudge-customer").digest()


def changes(c: Customer, cid: str, ev: Event, was: bool | None) -> list[AddressChange]:
    """What `ev` (just applied to `c`, whose consent was `was` before it) says about an
    address: the customer's own address for their consent, the named recipient for an
    ESP's bounce or complaint, both for an erasure."""
    kind, ts = ev.kind, ev.ts
    info = ev.consent
    if kind == Kind.IDENTIFY:
        given = ev.traits.marketing_consent if ev.traits is not None else None
        if not c.email or given is None or given is was:
            return []  # the usual identify: nothing changes (an opt-in only lifts what this
            # customer withdrew, and it withdrew only if its consent was False)
        if given and was is False:
            return [AddressChange(normalised(c.email), ts, OPT_IN, "all", cid)]
        if not given and was is True:  # a withdrawal, not a customer who never opted in
            return [AddressChange(normalised(c.email), ts, UNSUBSCRIBE, "all", cid)]
        return []
    own = normalised(c.email) if c.email else None
    if kind == Kind.UNSUBSCRIBED:
        scope = info.scope if info is not None else "all"
        return [AddressChange(own, ts, UNSUBSCRIBE, scope, cid)] if own else []
    if kind == Kind.SUBSCRIBED:
        scope = info.scope if info is not None else "all"
        lifted = EVERY_SCOPE if scope == "all" else scope
        return [AddressChange(own, ts, OPT_IN, lifted, cid)] if own else []
    named = normalised(info.address) if info is not None and info.address else None
    if kind == Kind.EMAIL_BOUNCED and named and info is not None:
        return [AddressChange(named, ts, BOUNCE if info.bounce == "hard" else SOFT_BOUNCE,
                              "all", cid)]
    if kind == Kind.EMAIL_MARKED_SPAM and named:
        return [AddressChange(named, ts, COMPLAINT, "all", cid)]
    if kind == Kind.ERASURE_REQUESTED:
        addresses = sorted({a for a in (own, named) if a})
        return [AddressChange(a, ts, ERASE, "all", cid) for a in addresses]
    return []


class AddressBook:
    """One address shard's suppression list. Changes and checks must come in event-time
    order, changes of an instant before its decisions (nudge/flows/addresses.py)."""

    __slots__ = ("entries",)

    def __init__(self, entries: dict[bytes, list[Any]] | None = None) -> None:
        self.entries: dict[bytes, list[Any]] = entries if entries is not None else {}

    def apply(self, ch: AddressChange) -> None:
        key = digest(ch.address)
        entry = self.entries.get(key)
        if ch.action == OPT_IN:
            if entry is not None and entry[_UNSUBS]:
                who = customer_digest(ch.customer_id)
                scopes = entry[_UNSUBS].get(who)
                if scopes is not None:
                    if ch.scope == EVERY_SCOPE:
                        scopes.clear()
                    else:
                        scopes.pop(ch.scope, None)
                    if not scopes:
                        del entry[_UNSUBS][who]
                self._forget_if_empty(key, entry)
            return
        if entry is None:
            entry = self.entries[key] = [{}, 0, 0, 0, 0]
        if ch.action == UNSUBSCRIBE:
            entry[_UNSUBS].setdefault(customer_digest(ch.customer_id), {})[ch.scope] = ch.at
        elif ch.action == BOUNCE:
            entry[_BOUNCED] = entry[_BOUNCED] or ch.at
        elif ch.action == COMPLAINT:
            entry[_COMPLAINED] = entry[_COMPLAINED] or ch.at
        elif ch.action == ERASE:
            entry[_ERASED] = entry[_ERASED] or ch.at
            # nothing of the customer stays: their unsubscribes become the erasure
            entry[_UNSUBS].pop(customer_digest(ch.customer_id), None)
        elif ch.action == SOFT_BOUNCE:
            entry[_SOFT] += 1

    def _forget_if_empty(self, key: bytes, entry: list[Any]) -> None:
        if not entry[_UNSUBS] and not any(entry[1:]):
            del self.entries[key]

    def blocks(self, address: str, trigger: str) -> str | None:
        """Why `address` may not receive an email of journey `trigger`, or None."""
        entry = self.entries.get(digest(address))
        if entry is None:
            return None
        if entry[_BOUNCED] or entry[_COMPLAINED] or entry[_ERASED]:
            return ADDRESS_SUPPRESSED
        for scopes in entry[_UNSUBS].values():
            if "all" in scopes or trigger in scopes:
                return ADDRESS_SUPPRESSED
        return None

    def check(self, d: Decision) -> Decision:
        """The decision as it stands for its address: a sent one to a suppressed address
        becomes `suppressed` / `address_suppressed`, with no email context."""
        if d.context is None:
            return d
        reason = self.blocks(d.context.email, d.trigger)
        if reason is None:
            return d
        return dataclasses.replace(d, outcome=OUTCOME_SUPPRESSED, reason=reason, context=None,
                                   subject="", propensity=None, incentive=None)

    def describe(self, address: str) -> dict[str, Any] | None:
        """The entry of `address` for people (`nudge inspect`), or None."""
        entry = self.entries.get(digest(address))
        if entry is None:
            return None
        return {"unsubscribed": sorted({s for scopes in entry[_UNSUBS].values() for s in scopes}),
                "hard_bounce_at": entry[_BOUNCED] or None,
                "complaint_at": entry[_COMPLAINED] or None,
                "erased_at": entry[_ERASED] or None, "soft_bounces": entry[_SOFT]}

    def __len__(self) -> int:
        return len(self.entries)

    def snapshot(self) -> dict[bytes, list[Any]]:
        return self.entries
