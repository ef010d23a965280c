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

The event contract's records (Kind, Event, Product, Position, RawChunk...) live in
nudge/core/events.py and the dead letter in nudge/core/deadletter.py; both are imported
here too, so `from nudge.core.records import Event` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from nudge.core.deadletter import DeadLetter
from nudge.core.events import (
    CONSENT_KINDS,
    COUNTED_ONLY,
    EMAIL_KINDS,
    TRACK_NAMES,
    ConsentInfo,
    EmailRef,
    Event,
    Kind,
    Position,
    Product,
    RawChunk,
    Traits,
)

__all__ = [
    "CONSENT_KINDS",
    "COUNTED_ONLY",
    "EMAIL_KINDS",
    "OUTCOME_ERASED",
    "OUTCOME_HOLDOUT",
    "OUTCOME_SENT",
    "OUTCOME_SUPPRESSED",
    "TRACK_NAMES",
    "AddressChange",
    "ConsentInfo",
    "DeadLetter",
    "Decision",
    "Email",
    "EmailContext",
    "EmailRef",
    "Erasure",
    "Event",
    "Incentive",
    "Kind",
    "Outcome",
    "ParsedChunk",
    "Position",
    "Product",
    "ProfileWrite",
    "RawChunk",
    "SegmentChange",
    "ShardChunk",
    "ShardMark",
    "Traits",
]


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
