"""The records that travel between stages: frozen, slotted, validated once at the edge.

Item shapes through the dataflow (see nudge/flows/dataflow.py):

    RawChunk       source partition -> parse     raw bytes with their source positions
    ParsedChunk    parse -> route                events, dead letters, the partition watermark
    ShardChunk     route -> customers            a shard's share of one ParsedChunk
    Decision       customers -> decide -> log    what happened to one journey stage
    ShardMark      customers -> decide           a shard's watermark after a batch
    Email          render -> deliver             a rendered message ready for a transport
    DeadLetter     any stage -> dead letters     the original bytes, where they came from, why

Times are int milliseconds since the epoch (UTC), see nudge.core.timefmt.

Event and Product, built once per input record, are frozen msgspec Structs rather than
frozen dataclasses: just as immutable and slotted, but built in C (0.05 us against 0.13 us
for a NamedTuple and ~1 us for a frozen dataclass, measured here), and the hot path builds
two per event.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, Final

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


@dataclass(frozen=True, slots=True)
class ParsedChunk:
    part: str
    n_parts: int
    events: list[Event]
    dead: list[DeadLetter]
    watermark: int | None
    tick: bool  # the watermark moved since the partition's last tick
    final: bool
    max_ts: int | None


@dataclass(frozen=True, slots=True)
class ShardChunk:
    shard: int
    part: str
    n_parts: int
    events: list[Event]
    watermark: int | None
    final: bool
    max_ts: int | None


@dataclass(frozen=True, slots=True)
class EmailContext:
    """What a template may know about the recipient at decision time. The shard fills in
    the customer's side; decide adds what needs every shard's view of the catalogue
    (`viewed`, `recommendations`)."""

    email: str
    first_name: str | None
    last_name: str | None
    timezone: str | None
    cart: tuple[Product, ...] = ()
    cart_value: float = 0.0
    recent: tuple[str, ...] = ()  # viewed product ids, most recent first
    bought: tuple[str, ...] = ()  # bought product ids, most recent first
    preferred_category: str | None = None
    segments: tuple[str, ...] = ()
    lifecycle: str = ""
    viewed: tuple[Product, ...] = ()  # `recent` with product details (decide)
    recommendations: tuple[Product, ...] = ()  # (decide)


@dataclass(frozen=True, slots=True)
class Incentive:
    text: str
    code: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one journey stage reaching its due time. The decision log's unit.

    `variant` is the stage's experiment arm (None without an experiment); `template` and
    `subject` are what the arm renders (subject "" = the template's own); `propensity`
    is the shard model's score at the due time (sent decisions only)."""

    customer_id: str
    trigger: str
    episode: int
    stage: int
    due: int
    outcome: str
    reason: str | None
    context: EmailContext | None = field(default=None, compare=False)
    variant: str | None = None
    template: str = ""
    subject: str = field(default="", compare=False)
    propensity: float | None = field(default=None, compare=False)
    incentive: Incentive | None = field(default=None, compare=False)

    @property
    def idempotency_key(self) -> str:
        return f"{self.customer_id}\x1f{self.trigger}\x1f{self.episode}\x1f{self.stage}"

    def sort_key(self) -> tuple[int, str, str, int]:
        return (self.due, self.customer_id, self.trigger, self.stage)


@dataclass(frozen=True, slots=True)
class ShardMark:
    """A shard's watermark after a batch: decide releases decisions below the minimum."""

    shard: int
    watermark: int | None
    final: bool


@dataclass(frozen=True, slots=True)
class Email:
    """A rendered message. `key` is the ledger's idempotency key (customer, trigger, ep, stage)."""

    key: str
    customer_id: str
    trigger: str
    episode: int
    stage: int
    due: int
    to: str
    from_addr: str
    subject: str
    preheader: str
    html: str
    text: str
    headers: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    # Links and images on hosts outside render.link_hosts that rendering replaced by the
    # shop link or left out (nudge/templates/links.py): 0 unless some data was hostile.
    links_replaced: int = 0


@dataclass(frozen=True, slots=True)
class SegmentChange:
    """A customer entered or left a segment at event time `at`."""

    customer_id: str
    segment: str
    change: str  # "entered" | "exited"
    at: int


@dataclass(frozen=True, slots=True)
class AddressChange:
    """What a customer's event says about an address's consent, for the shard that owns the
    address (nudge/state/consent.py): `action` is unsubscribe | opt_in | bounce | soft_bounce
    | complaint | erase, at event time `at`, by `customer_id`; `scope` is "all" or a
    journey's name ("*" for an opt-in that lifts every scope). `address` is normalised; the
    address shard keeps only its digest."""

    address: str
    at: int
    action: str
    scope: str
    customer_id: str

    def sort_key(self) -> tuple[int, int, str]:
        return (self.at, 0, self.customer_id)  # before the decisions of the same instant


@dataclass(frozen=True, slots=True)
class Outcome:
    """Whether a decision converted: an order credited to it (`converted`, at the order's
    time, with its revenue; one order is credited to one decision, see
    nudge/state/attribution.py) or none by the window's end (`not_converted`). Holdout
    decisions get outcomes too, on the same clock: that is the lift baseline. Engagement
    with a sent email (`delivered`, `opened`, `clicked`, at the event's time) travels as an
    Outcome too, so the report counts the funnel from one stream."""

    customer_id: str
    trigger: str
    episode: int
    stage: int
    decided: int  # the decision's due time
    variant: str | None
    arm: str  # the decision's outcome: sent | holdout
    outcome: str  # converted | not_converted, or engagement: delivered | opened | clicked
    at: int
    revenue: float = 0.0


@dataclass(frozen=True, slots=True)
class ProfileWrite:
    """A customer's committed record (or a shard's shared state, key `__shard__/N`) for the
    queryable profile view."""

    key: str
    value: bytes


OUTCOME_SENT: Final = "sent"
OUTCOME_SUPPRESSED: Final = "suppressed"
OUTCOME_HOLDOUT: Final = "holdout"
# Not a decision: an erasure travelling the decisions' path (customers -> decide -> render ->
# deliver), so that it reaches the ledger after every email of the customer due before it.
# Never in the decision log.
OUTCOME_ERASED: Final = "erased"


@dataclass(frozen=True, slots=True)
class Erasure:
    """For the deliver sink: erase this customer's ledger entries and outbox emails."""

    customer_id: str
    at: int
