"""The event contract's records: event kinds and names, the Event and its parts, and where a
record came from (Position, RawChunk).

Times are int milliseconds since the epoch (UTC), see nudge.core.timefmt.

Event and Product, built once per input record, are frozen msgspec Structs rather than
frozen dataclasses: just as immutable and slotted, but built in C (0.05 us against 0.13 us
for a NamedTuple and ~1 us for a frozen dataclass, measured here), and the hot path builds
two per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec


class Kind:
    """Event kinds as small ints: cheap to compare and to store in compact records."""

    PRODUCT_VIEWED: Final = 1
    PRODUCT_ADDED: Final = 2
    PRODUCT_REMOVED: Final = 3
    CART_VIEWED: Final = 4
    CHECKOUT_STARTED: Final = 5
    ORDER_COMPLETED: Final = 6
    IDENTIFY: Final = 7
    UNSUBSCRIBED: Final = 8
    EMAIL_OPENED: Final = 9
    EMAIL_CLICKED: Final = 10
    EMAIL_DELIVERED: Final = 11
    # consent and erasure (nudge/state/consent.py); 11 went to EMAIL_DELIVERED first
    EMAIL_BOUNCED: Final = 12
    EMAIL_MARKED_SPAM: Final = 13
    ERASURE_REQUESTED: Final = 14
    SUBSCRIBED: Final = 15
    # 20-39: identity (nudge/state/links.py, nudge/state/identity.py) and the calls and
    # e-commerce events that only count for engagement.
    PAGE: Final = 20  # a `page` or `screen` call without product properties
    ALIAS: Final = 21  # alias: customer_id = userId, anonymous_id = previousId
    LINK: Final = 22  # links -> identity: anonymous_id now belongs to customer_id
    MERGE: Final = 23  # identity -> customers: an anonymous id's history, for its user
    RETIRE: Final = 24  # identity -> customers: an anonymous record whose history moved


# Segment spec track event names (e-commerce v2, their v1 aliases, email events) -> Kind.
TRACK_NAMES: dict[str, int] = {
    "Product Viewed": Kind.PRODUCT_VIEWED,
    "Viewed Product": Kind.PRODUCT_VIEWED,
    "Product Added": Kind.PRODUCT_ADDED,
    "Added Product": Kind.PRODUCT_ADDED,
    "Product Removed": Kind.PRODUCT_REMOVED,
    "Removed Product": Kind.PRODUCT_REMOVED,
    "Cart Viewed": Kind.CART_VIEWED,
    "Viewed Cart": Kind.CART_VIEWED,
    "Checkout Started": Kind.CHECKOUT_STARTED,
    "Started Checkout": Kind.CHECKOUT_STARTED,
    "Order Completed": Kind.ORDER_COMPLETED,
    "Completed Order": Kind.ORDER_COMPLETED,
    "Unsubscribed": Kind.UNSUBSCRIBED,
    "Email Unsubscribed": Kind.UNSUBSCRIBED,
    "Email Opened": Kind.EMAIL_OPENED,
    "Email Link Clicked": Kind.EMAIL_CLICKED,
    "Email Delivered": Kind.EMAIL_DELIVERED,
    "Subscribed": Kind.SUBSCRIBED,
    "Email Bounced": Kind.EMAIL_BOUNCED,
    "Email Marked as Spam": Kind.EMAIL_MARKED_SPAM,
    "Erasure Requested": Kind.ERASURE_REQUESTED,
}
# The events that change consent or erase (README "Event contract"): read by the full path.
CONSENT_KINDS: Final = frozenset((Kind.UNSUBSCRIBED, Kind.SUBSCRIBED, Kind.EMAIL_BOUNCED,
                                  Kind.EMAIL_MARKED_SPAM, Kind.ERASURE_REQUESTED))
EMAIL_KINDS: Final = frozenset((Kind.EMAIL_OPENED, Kind.EMAIL_CLICKED, Kind.EMAIL_DELIVERED))

# The rest of Segment's e-commerce spec that shops send every day: accepted, counted
# (nudge_ignored_events_total{event}) and deliberately not acted on, never a dead letter.
COUNTED_ONLY: frozenset[str] = frozenset((
    "Product Added to Wishlist", "Product Removed from Wishlist", "Wishlist Product Added to Cart",
    "Products Searched", "Product List Viewed", "Product List Filtered", "Product Clicked",
    "Product Shared", "Cart Shared", "Product Reviewed", "Promotion Viewed",
    "Promotion Clicked", "Coupon Entered", "Coupon Applied", "Coupon Denied", "Coupon Removed",
    "Checkout Step Viewed", "Checkout Step Completed", "Payment Info Entered",
    "Order Updated", "Order Refunded", "Order Cancelled",
))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record came from: a Kafka (topic, partition, offset) or a (file, -1, line)."""

    source: str
    partition: int
    offset: int

    def describe(self) -> str:
        if self.partition < 0:
            return f"{self.source}:{self.offset}"
        return f"{self.source}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class RawChunk:
    """One batch read from one source partition, in partition order.

    `heartbeat` is a wall-clock watermark proposal sent by a live source only when its
    partition is caught up and idle; `final` marks the last chunk of a bounded partition.
    """

    part: str
    n_parts: int
    source: str
    partition: int
    records: list[tuple[int, bytes]]
    heartbeat: int | None = None
    final: bool = False


class Product(msgspec.Struct, frozen=True, gc=False):
    """A product as an event gave it, and as an email shows it (a cart line, a viewed or a
    recommended product: `quantity` 1 for the last two).

    Two other shapes are kept on purpose: nudge/flows/wire.py's WireProduct is the untrusted
    JSON schema with its limits (it becomes a Product once checked), and
    nudge/scoring/catalog.py's CatalogEntry is the trusted catalogue feed's product (sale
    price, availability, brand, when it changed): what is shown of a product that is not the
    customer's own comes from there, never from another customer's events."""

    product_id: str
    name: str
    price: float
    quantity: int
    category: str
    image_url: str
    url: str


@dataclass(frozen=True, slots=True)
class Traits:
    """Profile fields from `identify`; None means "not given in this call", not "erase"."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    marketing_consent: bool | None = None


class EmailRef(msgspec.Struct, frozen=True, gc=False):
    """Which email an engagement event (`Email Delivered`, `Email Opened`, `Email Link
    Clicked`) is about, from its properties: the email's key (its idempotency key,
    `customer\x1ftrigger\x1fepisode\x1fstage`, gives the episode; 0 when it is another
    form), journey, stage and variant. `machine`: a mail-privacy proxy or a link scanner,
    not a person."""

    key: str
    trigger: str
    stage: int
    variant: str | None = None
    episode: int = 0
    machine: bool = False


class ConsentInfo(msgspec.Struct, frozen=True, gc=False):
    """What a consent event says beyond its kind: the scope of an `Unsubscribed` or
    `Subscribed` ("all" or a journey's name), the recipient address an ESP's `Email Bounced`
    or `Email Marked as Spam` names (canonical, nudge/core/address.py), or the address an
    `Erasure Requested` names besides the customer's own; a bounce's type."""

    scope: str = "all"
    address: str | None = None
    bounce: str = ""  # "hard" | "soft" (Email Bounced only)


class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated shop event.

    The first four fields are the order a shard applies events in: event time, then
    customer, then source position (offset, partition ordinal), so the order is the same
    whatever the batching (see nudge/state/shard.py). `ts` is the effective event time: the
    producer's timestamp, raised to the partition's watermark when the record arrived later
    than the allowed lateness (see nudge/flows/parse.py).
    """

    ts: int
    customer_id: str
    offset: int
    part: int
    kind: int
    message_id: str
    products: tuple[Product, ...] = ()
    order_id: str | None = None
    revenue: float = 0.0
    traits: Traits | None = None
    email: EmailRef | None = None  # engagement events that name their email
    consent: ConsentInfo | None = None  # CONSENT_KINDS
    # Identity (nudge/state/links.py, identity.py). From parse: the anonymousId of an event
    # that also carries a userId (or an alias's previousId); an event with only an
    # anonymousId has customer_id `anon:<id>` (nudge.core.ids) and no anonymous_id. On the
    # way to a customer shard it is set only on an event that reached a user through its
    # anonymous id alone (it may not change that user's consent).
    anonymous_id: str | None = None
    history: tuple[Event, ...] = ()  # Kind.MERGE: the anonymous id's events, in order

    def at(self, ts: int) -> Event:
        """The same event with another effective time (a late event raised to the watermark)."""
        return msgspec.structs.replace(self, ts=ts)

    def keyed(self, customer_id: str, anonymous_id: str | None) -> Event:
        """The same event for another customer key and anonymous id (identity)."""
        return msgspec.structs.replace(self, customer_id=customer_id, anonymous_id=anonymous_id)


