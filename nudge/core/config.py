"""Configuration: one TOML file, every value with a default, validated once at start-up.

A bad file fails fast with the key path and the reason:

>>> load_text('[caps]\\nwindow = "1x"')
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config caps.window: invalid duration '1x' (use e.g. 30m, 1h, 24h, 7d)
>>> cfg = load_text('[triggers.cart_abandonment]\\nstages = ["30m", "24h"]')
>>> [stage.delay for stage in cfg.trigger("cart_abandonment").stages]
[1800000, 86400000]

Journeys, segments, features, the model and recommendations: nudge/core/journeyconfig.py.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nudge.core.configtable import Table, clock, non_negative
from nudge.core.errors import ConfigError
from nudge.core.journeyconfig import (
    FeaturesConfig,
    ModelConfig,
    RecommendConfig,
    SegmentConfig,
    TriggerConfig,
    parse_features,
    parse_model,
    parse_recommendations,
    parse_segments,
    parse_triggers,
)
from nudge.core.timefmt import parse_duration


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    brokers: tuple[str, ...] = ("localhost:9092",)
    topic: str = "shop-events"
    dead_letter_topic: str = "nudge-dead-letters"
    decisions_topic: str = "nudge-decisions"
    email_topic: str = "nudge-emails"
    segments_topic: str = "nudge-segments"
    outcomes_topic: str = "nudge-outcomes"
    batch_size: int = 10_000  # records a chunk; a chunk costs once per shard
    tail: bool = True
    client_config: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class EventsConfig:
    max_payload_bytes: int = 64 * 1024
    dedup_window: int = parse_duration("24h")
    allowed_lateness: int = parse_duration("1m")
    heartbeat_interval: int = parse_duration("500ms")
    max_future_skew: int = parse_duration("1d")
    ignore: tuple[str, ...] = ()
    batch_size: int = 10_000  # records a chunk; a chunk costs once per shard


@dataclass(frozen=True, slots=True)
class CapsConfig:
    max_emails: int = 1
    window: int = parse_duration("24h")


@dataclass(frozen=True, slots=True)
class QuietHoursConfig:
    enabled: bool = False
    start: int = 21 * 60  # minutes after local midnight
    end: int = 8 * 60
    default_timezone: str = "UTC"
    action: str = "defer"  # or "suppress"


@dataclass(frozen=True, slots=True)
class RenderConfig:
    strict: bool = False
    shop_name: str = "Nudge Demo Shop"
    shop_url: str = "https://shop.example"
    from_email: str = "hello@shop.example"
    from_name: str = "Nudge Demo Shop"
    reply_to: str = ""
    unsubscribe_url: str = "https://shop.example/unsubscribe?token={token}"
    unsubscribe_mailto: str = "unsubscribe@shop.example"
    unsubscribe_secret: str = "change-me"
    utm_source: str = "nudge"
    utm_medium: str = "email"
    currency: str = "EUR"


@dataclass(frozen=True, slots=True)
class EspConfig:
    url: str = "https://api.sendgrid.com/v3/mail/send"
    api_key_env: str = "NUDGE_ESP_API_KEY"
    timeout: int = parse_duration("10s")
    max_attempts: int = 5
    backoff_base: int = parse_duration("500ms")
    backoff_max: int = parse_duration("30s")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str = "localhost"
    port: int = 25
    username: str = ""
    password_env: str = "NUDGE_SMTP_PASSWORD"
    starttls: bool = False
    timeout: int = parse_duration("10s")
    max_attempts: int = 5
    backoff_base: int = parse_duration("500ms")
    backoff_max: int = parse_duration("30s")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    transport: str = "outbox"  # outbox | esp | smtp | kafka | none (decisions only)
    outbox_dir: str = "var/outbox"
    ledger_dir: str = "var/ledger"
    concurrency: int = 8  # sender threads
    queue_size: int = 1000  # emails waiting for a sender; a full queue holds the flow back
    rate_limit: int = 0  # sends per second across all senders; 0 = unlimited
    esp: EspConfig = field(default_factory=EspConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)


@dataclass(frozen=True, slots=True)
class OutputsConfig:
    decisions: str = "var/decisions.jsonl"  # a path, or "kafka" for kafka.decisions_topic
    dead_letters: str = "var/dead-letters.jsonl"  # a path, or "kafka"
    segments: str = "var/segments.jsonl"  # membership changes: a path, "kafka", or "" (off)
    outcomes: str = "var/outcomes.jsonl"  # did a decision convert: a path, "kafka", or ""
    profiles: str = "var/profiles"  # the queryable profile view (RocksDB dir), or "" (off)


@dataclass(frozen=True, slots=True)
class DeadLetterReplayConfig:
    """`nudge deadletters replay`: which dead letters were re-fed (RocksDB, kept across runs
    so none is re-fed twice) and where replay files for file input go."""

    state_dir: str = "var/replayed-dead-letters"
    out_dir: str = "var/replay"  # one subdirectory per run


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    dir: str = ""  # empty: no recovery
    snapshot_interval: int = parse_duration("10s")
    backup_interval: int = parse_duration("0s")


def default_triggers() -> tuple[TriggerConfig, ...]:
    return parse_triggers(Table({}, "triggers"))


@dataclass(frozen=True, slots=True)
class Config:
    shards: int = 64
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    triggers: tuple[TriggerConfig, ...] = field(default_factory=default_triggers)
    segments: tuple[SegmentConfig, ...] = ()
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    recommendations: RecommendConfig = field(default_factory=RecommendConfig)
    caps: CapsConfig = field(default_factory=CapsConfig)
    quiet_hours: QuietHoursConfig = field(default_factory=QuietHoursConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)
    dead_letter_replay: DeadLetterReplayConfig = field(default_factory=DeadLetterReplayConfig)

    def trigger(self, name: str) -> TriggerConfig:
        for t in self.triggers:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def journeys(self) -> tuple[TriggerConfig, ...]:
        """The enabled triggers, in config order (presets first): the order stages of one
        customer due at the same instant are reached in."""
        return tuple(t for t in self.triggers if t.enabled)


def _kafka(t: Table) -> KafkaConfig:
    d = KafkaConfig()
    brokers = t.strings("brokers", d.brokers)
    if not brokers:
        raise ConfigError(t.key("brokers"), "needs at least one host:port")
    client = t.get("client_config", dict, {})
    cfg = KafkaConfig(
        brokers=brokers,
        topic=t.get("topic", str, d.topic),
        dead_letter_topic=t.get("dead_letter_topic", str, d.dead_letter_topic),
        decisions_topic=t.get("decisions_topic", str, d.decisions_topic),
        email_topic=t.get("email_topic", str, d.email_topic),
        segments_topic=t.get("segments_topic", str, d.segments_topic),
        outcomes_topic=t.get("outcomes_topic", str, d.outcomes_topic),
        batch_size=t.positive_int("batch_size", d.batch_size),
        tail=t.get("tail", bool, d.tail),
        client_config=tuple(sorted((str(k), str(v)) for k, v in client.items())),
    )
    t.done()
    return cfg


def _events(t: Table) -> EventsConfig:
    d = EventsConfig()
    cfg = EventsConfig(
        max_payload_bytes=t.positive_int("max_payload_bytes", d.max_payload_bytes),
        dedup_window=t.duration("dedup_window", d.dedup_window),
        allowed_lateness=t.duration("allowed_lateness", d.allowed_lateness),
        heartbeat_interval=t.duration("heartbeat_interval", d.heartbeat_interval),
        max_future_skew=t.duration("max_future_skew", d.max_future_skew),
        ignore=t.strings("ignore", d.ignore),
        batch_size=t.positive_int("batch_size", d.batch_size),
    )
    t.done()
    return cfg


def _quiet_hours(t: Table) -> QuietHoursConfig:
    d = QuietHoursConfig()
    tz = t.get("default_timezone", str, d.default_timezone)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(t.key("default_timezone"), f"unknown IANA timezone {tz!r}") from None
    cfg = QuietHoursConfig(
        enabled=t.get("enabled", bool, d.enabled),
        start=clock(t, "start", d.start),
        end=clock(t, "end", d.end),
        default_timezone=tz,
        action=t.choice("action", ("defer", "suppress"), d.action),
    )
    if cfg.start == cfg.end and cfg.enabled:
        raise ConfigError(t.key("end"), "quiet hours must not start and end at the same time")
    t.done()
    return cfg


def _strings_table(t: Table, cls: type, defaults: Any) -> Any:
    values = {}
    for f in dataclasses.fields(cls):
        name = f.name
        default = getattr(defaults, name)
        if isinstance(default, bool):
            values[name] = t.get(name, bool, default)
        elif isinstance(default, int):
            if name in {"timeout", "backoff_base", "backoff_max"}:
                values[name] = t.duration(name, default)
            else:
                values[name] = t.positive_int(name, default)
        elif isinstance(default, str):
            values[name] = t.get(name, str, default)
    t.done()
    return cls(**values)


def _delivery(t: Table) -> DeliveryConfig:
    d = DeliveryConfig()
    cfg = DeliveryConfig(
        transport=t.choice("transport", ("outbox", "esp", "smtp", "kafka", "none"), d.transport),
        outbox_dir=t.get("outbox_dir", str, d.outbox_dir),
        ledger_dir=t.get("ledger_dir", str, d.ledger_dir),
        concurrency=t.positive_int("concurrency", d.concurrency),
        queue_size=t.positive_int("queue_size", d.queue_size),
        rate_limit=non_negative(t, "rate_limit", d.rate_limit),
        esp=_strings_table(t.table("esp"), EspConfig, d.esp),
        smtp=_strings_table(t.table("smtp"), SmtpConfig, d.smtp),
    )
    t.done()
    return cfg


def _recovery(t: Table) -> RecoveryConfig:
    d = RecoveryConfig()
    cfg = RecoveryConfig(
        dir=t.get("dir", str, d.dir),
        snapshot_interval=t.duration("snapshot_interval", d.snapshot_interval),
        backup_interval=t.duration("backup_interval", d.backup_interval),
    )
    t.done()
    return cfg


def from_dict(data: dict[str, Any]) -> Config:
    root = Table(data, "")
    shards = root.positive_int("shards", Config().shards)
    triggers = parse_triggers(root.table("triggers"))
    caps_t = root.table("caps")
    caps_d = CapsConfig()
    caps = CapsConfig(
        max_emails=caps_t.positive_int("max_emails", caps_d.max_emails),
        window=caps_t.duration("window", caps_d.window),
    )
    caps_t.done()
    cfg = Config(
        shards=shards,
        kafka=_kafka(root.table("kafka")),
        events=_events(root.table("events")),
        triggers=triggers,
        segments=parse_segments(root.table("segments")),
        features=parse_features(root.table("features")),
        model=parse_model(root.table("model")),
        recommendations=parse_recommendations(root.table("recommendations")),
        caps=caps,
        quiet_hours=_quiet_hours(root.table("quiet_hours")),
        render=_strings_table(root.table("render"), RenderConfig, RenderConfig()),
        delivery=_delivery(root.table("delivery")),
        outputs=_strings_table(root.table("outputs"), OutputsConfig, OutputsConfig()),
        recovery=_recovery(root.table("recovery")),
        dead_letter_replay=_strings_table(root.table("dead_letter_replay"),
                                          DeadLetterReplayConfig, DeadLetterReplayConfig()),
    )
    root.done()
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
    return load_text(text, str(p))
