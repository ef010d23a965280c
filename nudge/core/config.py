"""Configuration: one TOML file, every value with a default, validated once at start-up.

Each key is declared once, below and in nudge/core/journeyconfig.py: a field of a frozen
dataclass with its type, default and doc (nudge/core/configspec.py). Loading, the errors and
the reference in docs/configuration.md (`python -m nudge.tools.configdoc`) derive from that.
A bad file fails fast with the key path and the reason:

>>> load_text('[caps]\\nwindow = "1x"')
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config caps.window: invalid duration '1x' (use e.g. 30m, 1h, 24h, 7d)
>>> cfg = load_text('[triggers.cart_abandonment]\\nstages = ["30m", "24h"]')
>>> [stage.delay for stage in cfg.trigger("cart_abandonment").stages]
[1800000, 86400000]

To add a key: add a field to the dataclass of its table with `setting(default, "doc")` and its
type; then regenerate docs/configuration.md (`python -m nudge.tools.configdoc --write`).
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.core.configspec import (
    Clock,
    Duration,
    NonEmpty,
    Positive,
    read,
    section,
    setting,
)
from nudge.core.configtable import Table
from nudge.core.deliveryconfig import DeliveryConfig
from nudge.core.errors import ConfigError
from nudge.core.journeyconfig import (
    FeaturesConfig,
    ModelConfig,
    RecommendConfig,
    SegmentConfig,
    TriggerConfig,
    default_triggers,
    parse_segments,
    parse_triggers,
)
from nudge.core.keyring import SecretsConfig
from nudge.core.serveconfig import ServeConfig, TrackingConfig, WebhooksConfig
from nudge.core.timefmt import parse_duration


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: Annotated[tuple[str, ...], NonEmpty("needs at least one host:port")] = setting(
        ("localhost:9092",), "Bootstrap brokers, `host:port`.")
    topic: str = setting("shop-events", "The topic of shop events Nudge reads.")
    dead_letter_topic: str = setting(
        "nudge-dead-letters", "Dead letters go here when an output is set to `\"kafka\"`.")
    decisions_topic: str = setting(
        "nudge-decisions", "Decisions go here when `outputs.decisions = \"kafka\"`.")
    email_topic: str = setting(
        "nudge-emails", "Rendered emails go here when `delivery.transport = \"kafka\"`.")
    segments_topic: str = setting(
        "nudge-segments", "Segment changes go here when `outputs.segments = \"kafka\"`.")
    outcomes_topic: str = setting(
        "nudge-outcomes", "Attribution outcomes go here when `outputs.outcomes = \"kafka\"`.")
    batch_size: Positive = setting(
        10_000, "Records a consumer hands the flow at once; a batch costs once per shard.")
    tail: bool = setting(
        True, "Keep reading at the end of the topic (live); false stops there (`--bounded`).")
    client_config: tuple[tuple[str, str], ...] = setting(
        (), "librdkafka properties applied last to every client (TLS, SASL, timeouts), e.g. "
            "`{ \"security.protocol\" = \"SASL_SSL\" }`.", kind="table of librdkafka properties")


@dataclass(frozen=True, slots=True)
class EventsConfig:
    max_payload_bytes: Positive = setting(
        64 * 1024, "A larger event is a dead letter (`payload_too_large`).")
    dedup_window: Duration = setting(
        parse_duration("24h"), "A repeated `messageId` within this much event time is dropped.")
    allowed_lateness: Duration = setting(
        parse_duration("1m"), "How far behind the newest event time an event may arrive and "
                              "still count; an event takes effect this long after it happened.")
    heartbeat_interval: Duration = setting(
        parse_duration("500ms"), "Live mode: how often an idle, caught-up partition advances "
                                 "event time to the wall clock minus `allowed_lateness`.")
    max_future_skew: Duration = setting(
        parse_duration("1d"), "An event stamped later than now plus this is a dead letter.")
    ignore: tuple[str, ...] = setting(
        (), "Event names dropped and counted; any other unknown name is a dead letter.")
    batch_size: Positive = setting(
        10_000, "File input: lines handed the flow at once; a batch costs once per shard.")


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """Segment's identity model (docs/identity.md): an anonymous id's history follows its user."""

    enabled: bool = setting(
        True, "Link anonymous ids to users (an event carrying both, or `alias`) and merge the "
              "anonymous history into the user's record; off: the two namespaces stay apart.")
    shards: Positive = setting(
        2, "Keys of each identity step (links by user, identity by anonymous id); stored "
           "schema like `shards`.")
    max_anonymous_ids: Positive = setting(
        5, "Anonymous ids a customer may take within `anonymous_ids_window` (Segment's "
           "default); more are refused (`too_many_anonymous_ids`).")
    anonymous_ids_window: Duration = setting(
        parse_duration("7d"), "The window of `max_anonymous_ids`.")
    blocked_ids: tuple[str, ...] = setting(
        ("null", "undefined", "anonymous", "0", "-1", "none", "nil"),
        "Values that are never an identifier, in any case (an empty one never is either): "
        "they would glue strangers into one profile (`blocked_id`).")
    history_events: Positive = setting(
        200, "An anonymous id's most recent events kept for its merge.")
    history_window: Duration = setting(
        parse_duration("7d"), "... and of those, only the ones this recent (an older session "
                              "does not merge).")
    ttl: Duration = setting(
        parse_duration("30d"), "An anonymous id idle this long is forgotten (links too).")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.anonymous_ids_window <= 0:
            yield "anonymous_ids_window", "must be longer than 0"
        if self.ttl < self.anonymous_ids_window:
            yield "ttl", "must be at least identity.anonymous_ids_window"


@dataclass(frozen=True, slots=True)
class CapsConfig:
    max_emails: Positive = setting(1, "Emails a customer gets at most within `window`, across "
                                      "all journeys.")
    window: Duration = setting(parse_duration("24h"), "The frequency cap's sliding window.")


@dataclass(frozen=True, slots=True)
class QuietHoursConfig:
    enabled: bool = setting(False, "Hold emails due in the customer's local night.")
    start: Clock = setting(21 * 60, "Local time the quiet hours start.", shown="21:00")
    end: Clock = setting(8 * 60, "Local time they end (may be the next morning).", shown="08:00")
    default_timezone: str = setting(
        "UTC", "IANA timezone of customers whose events carry none.")
    action: Literal["defer", "suppress"] = setting(
        "defer", "`defer` sends at the end of the quiet hours; `suppress` drops the email.")

    def problems(self) -> Iterator[tuple[str, str]]:
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            yield "default_timezone", f"unknown IANA timezone {self.default_timezone!r}"
        if self.enabled and self.start == self.end:
            yield "end", "quiet hours must not start and end at the same time"


@dataclass(frozen=True, slots=True)
class RenderConfig:
    strict: bool = setting(
        False, "A missing template variable is an error (tests) instead of empty text and a "
               "warning.")
    shop_name: str = setting("Nudge Demo Shop", "The shop's name in emails.")
    shop_url: str = setting("https://shop.example", "The shop's home page.")
    from_email: str = setting("hello@shop.example", "The sender's address.")
    from_name: str = setting("Nudge Demo Shop", "The sender's display name.")
    reply_to: str = setting("", "A Reply-To address; empty: none.")
    unsubscribe_url: str = setting(
        "https://shop.example/unsubscribe?token={token}",
        "One-click unsubscribe link; `{token}` becomes a signed token of the customer.")
    unsubscribe_mailto: str = setting(
        "unsubscribe@shop.example", "The `mailto:` of the List-Unsubscribe header.")
    utm_source: str = setting("nudge", "`utm_source` added to the emails' links.")
    utm_medium: str = setting("email", "`utm_medium` added to the emails' links.")
    currency: str = setting("EUR", "ISO 4217 currency of prices shown.")
    link_hosts: tuple[str, ...] = setting(
        (), "Hosts every link and image of an email may point to; empty: the host of "
            "`shop_url`. The hosts of `shop_url` and `unsubscribe_url` are always allowed. A "
            "link elsewhere becomes the shop link, an image elsewhere is left out; both are "
            "counted (`nudge_links_replaced_total`).")

    def problems(self) -> Iterator[tuple[str, str]]:
        for host in self.link_hosts:
            if not host or any(ch in host for ch in "/:@?# \\") or host != host.lower():
                yield "link_hosts", (f"{host!r} is not a lower-case host name (like "
                                     "shop.example, without scheme or path)")


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    """The shop's product feed (nudge/scoring/catalog.py): the one source of product data
    shown across customers. Without one, recommendations are off."""

    topic: str = setting(
        "", "A compacted Kafka topic keyed by product id (JSON values with the Google Merchant "
            "feed's fields; a tombstone removes a product).")
    files: tuple[str, ...] = setting(
        (), "Catalog feed files (JSONL, or CSV/TSV with the Google Merchant columns), "
            "relative to the config file; read instead of `topic` when given.")
    max_products: Positive = setting(
        1_000_000, "The memory cap: updates for new products beyond it are refused and "
                   "counted (`nudge_catalog_refused_total`); about 400 bytes of RSS each.")

    @property
    def enabled(self) -> bool:
        return bool(self.topic or self.files)


@dataclass(frozen=True, slots=True)
class OutputsConfig:
    decisions: str = setting("var/decisions.jsonl",
                             "The decision log: a path, or `\"kafka\"` (`kafka.decisions_topic`).")
    dead_letters: str = setting(
        "var/dead-letters.jsonl",
        "Dead letters: a path, or `\"kafka\"` (`kafka.dead_letter_topic`).")
    segments: str = setting("var/segments.jsonl",
                            "Segment membership changes: a path, `\"kafka\"`, or `\"\"` (off).")
    outcomes: str = setting("var/outcomes.jsonl",
                            "Did a decision convert: a path, `\"kafka\"`, or `\"\"` (off).")
    profiles: str = setting("var/profiles",
                            "The queryable profile view (a RocksDB directory), or `\"\"` (off).")


@dataclass(frozen=True, slots=True)
class DeadLetterReplayConfig:
    """`nudge deadletters replay`: which dead letters were re-fed (RocksDB, kept across runs
    so none is re-fed twice) and where replay files for file input go."""

    state_dir: str = setting("var/replayed-dead-letters",
                             "Which dead letters were re-fed already (RocksDB, kept across runs).")
    out_dir: str = setting("var/replay", "Replay files for file input, one directory per run.")


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    dir: str = setting("", "Bytewax's recovery store (`nudge recovery init`); empty: no "
                           "recovery.")
    snapshot_interval: Duration = setting(
        parse_duration("10s"), "How often state is snapshotted: how much input a crash re-reads.")
    backup_interval: Duration = setting(
        parse_duration("0s"), "How long old snapshots are kept (for storage backed up with a "
                              "delay).")
    store_history: Positive = setting(
        16, "How many of its latest commits (one an epoch) each shard's customer store can "
            "undo, for a run that resumes from an older snapshot than the store reached (after "
            "a crash, or from recovery partitions restored from a backup: keep it above "
            "`backup_interval` / `snapshot_interval`). The stores live in "
            "`<recovery.dir>/customers/`; an erased customer's bytes leave their files this "
            "many commits of the shard after the erasure.")


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    model: Literal["last_touch", "first_touch", "none"] = setting(
        "last_touch", "Which decision an order is credited to, one order one credit: "
                      "`last_touch`, the latest email before the order within "
                      "`model.attribution_window` (a clicked email ranks above one only sent); "
                      "`first_touch`, the earliest; `none`, no credit (no conversion outcomes; "
                      "the model still learns).")


@dataclass(frozen=True, slots=True)
class ReportConfig:
    min_sample: Positive = setting(
        100, "`nudge report`: below this many recipients in an arm a comparison says "
             "\"not enough data\" instead of a verdict.")
    html: str = setting("var/report.html", "Where `nudge demo` writes the HTML report.")


@dataclass(frozen=True, slots=True)
class Config:
    shards: Positive = setting(
        64, "Customer shards; stored schema: recovery state is keyed by shard.")
    kafka: KafkaConfig = section(KafkaConfig, "The Kafka brokers and topics.")
    events: EventsConfig = section(EventsConfig, "What counts as a valid event, and event time.")
    identity: IdentityConfig = section(IdentityConfig, "Anonymous ids and users: links and "
                                                       "merges.")
    triggers: tuple[TriggerConfig, ...] = setting(
        doc="Journeys, each `[triggers.<name>]`; a preset's name starts from the preset.",
        factory=default_triggers, parse=lambda t, name: parse_triggers(t.table(name)),
        named=True)
    segments: tuple[SegmentConfig, ...] = setting(
        (), "Segments, each `[segments.<name>]` with a rule over the features.",
        parse=lambda t, name: parse_segments(t.table(name)), named=True)
    features: FeaturesConfig = section(FeaturesConfig, "How features are computed.")
    model: ModelConfig = section(ModelConfig, "The propensity model and the incentive.")
    attribution: AttributionConfig = section(AttributionConfig, "Which email an order is "
                                                                "credited to.")
    report: ReportConfig = section(ReportConfig, "`nudge report`.")
    recommendations: RecommendConfig = section(RecommendConfig, "Product recommendations "
                                                                "(they need a catalog).")
    catalog: CatalogConfig = section(CatalogConfig, "The shop's product feed: what emails show "
                                                    "of products beyond a customer's own cart.")
    caps: CapsConfig = section(CapsConfig, "The frequency cap, across all journeys.")
    quiet_hours: QuietHoursConfig = section(QuietHoursConfig, "No email in the local night.")
    render: RenderConfig = section(RenderConfig, "What emails say and link to.")
    delivery: DeliveryConfig = section(DeliveryConfig, "How emails are sent.")
    outputs: OutputsConfig = section(OutputsConfig, "Where the flow's records go.")
    recovery: RecoveryConfig = section(RecoveryConfig, "Crash and resume.")
    dead_letter_replay: DeadLetterReplayConfig = section(
        DeadLetterReplayConfig, "`nudge deadletters replay`.")
    serve: ServeConfig = section(ServeConfig, "`nudge serve`: the collector and its limits.")
    tracking: TrackingConfig = section(TrackingConfig, "Open and click tracking.")
    webhooks: WebhooksConfig = section(WebhooksConfig, "ESP webhooks (`nudge serve`).")
    secrets: SecretsConfig = section(
        SecretsConfig, "Keys that sign tokens and key log ids, from env or files.")

    def trigger(self, name: str) -> TriggerConfig:
        for t in self.triggers:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def recommending(self) -> bool:
        """Recommendations need a catalog: without one nothing crosses customers."""
        return self.recommendations.enabled and self.catalog.enabled

    @property
    def journeys(self) -> tuple[TriggerConfig, ...]:
        """The enabled triggers, in config order (presets first): the order stages of one
        customer due at the same instant are reached in."""
        return tuple(t for t in self.triggers if t.enabled)


def from_dict(data: dict[str, Any]) -> Config:
    cfg: Config = read(Config, Table(data, ""))
    return cfg


def load_text(text: str, origin: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(origin, f"not valid TOML: {exc}") from None
    return from_dict(data)


def load(path: str | Path | None) -> Config:
    """Read a config file; None gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), f"cannot read: {exc.strerror}") from None
    cfg = load_text(text, str(p))
    if cfg.catalog.files:
        # Catalog feeds ship beside their config (the demo's): relative to its directory.
        files = tuple(f if Path(f).is_absolute() else str(p.parent / f)
                      for f in cfg.catalog.files)
        cfg = dataclasses.replace(cfg, catalog=dataclasses.replace(cfg.catalog, files=files))
    return cfg
