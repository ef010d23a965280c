"""The `[delivery]` table: the transport, its senders and queue, and each transport's own
retry settings (declared as in nudge/core/config.py, which holds it as `Config.delivery`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from nudge.core.configspec import (
    Duration,
    NonNegative,
    Positive,
    section,
    setting,
)
from nudge.core.timefmt import parse_duration

Transport = Literal["outbox", "esp", "smtp", "kafka", "none"]


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries with exponential backoff and jitter (nudge/delivery/retry.py)."""

    max_attempts: Positive = setting(
        5, "Sends of an email before a temporary failure is dead-lettered.")
    backoff_base: Duration = setting(
        parse_duration("500ms"), "The wait before the first retry, at most (full jitter); it "
                                 "doubles each retry.")
    backoff_max: Duration = setting(
        parse_duration("30s"), "The longest wait between retries (a longer `Retry-After` is "
                               "honoured up to 60 s).")


@dataclass(frozen=True, slots=True)
class EspConfig(RetrySettings):
    provider: Literal["sendgrid", "postmark", "mailgun", "resend"] = setting(
        "sendgrid", "Whose HTTP API: each has its own request format (nudge/delivery/esps/).")
    url: str = setting("", "The send endpoint; empty: the provider's own.")
    domain: str = setting("", "Mailgun: the sending domain (its URL names it).")
    api_key_env: str = setting("NUDGE_ESP_API_KEY",
                               "The environment variable that holds the API key.")
    timeout: Duration = setting(parse_duration("10s"), "One request's timeout.")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.provider == "mailgun" and not self.domain:
            yield "domain", "Mailgun needs the sending domain"


@dataclass(frozen=True, slots=True)
class SmtpConfig(RetrySettings):
    host: str = setting("localhost", "The SMTP server.")
    port: Positive = setting(25, "Its port.")
    username: str = setting("", "Login name; empty: no login.")
    password_env: str = setting("NUDGE_SMTP_PASSWORD",
                                "The environment variable that holds the password.")
    tls: Literal["implicit", "starttls", "none"] = setting(
        "starttls", "`implicit`: TLS from the first byte (port 465); `starttls`: upgrade before "
                    "anything else, and fail if the server does not offer it; `none`: plain "
                    "text.")
    ca_file: str = setting(
        "", "A PEM bundle of CAs to verify the server's certificate with; empty: the system's.")
    allow_plaintext_auth: bool = setting(
        False, "Send the login over `tls = \"none\"` (refused unless set).")
    timeout: Duration = setting(parse_duration("10s"), "One connection's timeout.")

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.username and self.tls == "none" and not self.allow_plaintext_auth:
            yield "username", ('AUTH would cross the network unencrypted with tls = "none"; '
                               'use tls = "implicit" or "starttls" (or set '
                               'allow_plaintext_auth = true)')


@dataclass(frozen=True, slots=True)
class KafkaDeliveryConfig:
    max_attempts: Positive = setting(
        5, "Times an email is produced before a failed delivery report dead-letters it; the "
           "producer already retries and backs off within each (librdkafka `retries`, "
           "`retry.backoff.ms` in `kafka.client_config`).")


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    transport: Transport = setting(
        "outbox", "Where emails go: `outbox` (.eml files), `esp` (HTTP), `smtp`, `kafka` "
                  "(`kafka.email_topic`) or `none` (decisions only). The outbox does not "
                  "retry: a failed write is dead-lettered at once.")
    outbox_dir: str = setting("var/outbox", "The outbox transport's directory.")
    ledger_dir: str = setting(
        "var/ledger", "The send ledger (RocksDB): every email's outcome, so none is sent twice.")
    concurrency: Positive = setting(8, "Sender threads (esp, smtp).")
    queue_size: Positive = setting(
        1000, "Emails waiting for a sender thread; a full queue holds the flow back.")
    rate_limit: NonNegative = setting(
        0, "Sends per second across all senders (retries count); 0: unlimited.")
    guarantee: Literal["at_least_once", "at_most_once"] = setting(
        "at_least_once", "After a crash, an email whose fate is unknown (sent, no answer "
                         "recorded) is sent again (`at_least_once`: none lost, a copy "
                         "possible) or reported as a dead letter `in_doubt` and never re-sent "
                         "(`at_most_once`: none twice, an email in doubt may be lost).")
    esp: EspConfig = section(EspConfig, "The HTTP ESP transport.")
    smtp: SmtpConfig = section(SmtpConfig, "The SMTP transport.")
    kafka: KafkaDeliveryConfig = section(KafkaDeliveryConfig, "The Kafka transport.")

