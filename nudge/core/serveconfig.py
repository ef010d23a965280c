"""Configuration of `nudge serve` (the collector, tracking, unsubscribe and ESP webhooks),
declared like every other key (nudge/core/configspec.py). Secrets are never in the file:
each is named by the environment variable that holds it.

>>> from nudge.core.configspec import read
>>> from nudge.core.configtable import Table
>>> read(TrackingConfig, Table({"base_url": "t.shop.example"}, "tracking"))
Traceback (most recent call last):
...
nudge.core.errors.ConfigError: config tracking.base_url: must start with https:// or http://
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from nudge.core.configspec import Bound, Duration, Positive, setting
from nudge.core.timefmt import parse_duration

# Link scanners and mail-privacy proxies that fetch pixels and links on the reader's behalf
# (substrings of the User-Agent, lower case). Apple's Mail Privacy Protection fetches with an
# ordinary browser's agent, so opens stay an upper bound where many read with Apple Mail.
MACHINE_AGENTS = ("googleimageproxy", "yahoomailproxy", "ymailproxy", "outlook-ios-linkpreview",
                  "microsoft office", "ms-office", "barracuda", "proofpoint", "mimecast",
                  "symantec", "messagelabs", "trendmicro", "forcepoint", "safelinks",
                  "bot", "spider", "crawler", "curl/", "wget/", "python-requests",
                  "python-httpx", "go-http-client", "headlesschrome", "preview")

Port = Annotated[int, Bound(1, 65535)]


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str = setting("127.0.0.1", "The address `nudge serve` listens on.")
    port: Port = setting(8080, "Its port.")
    workers: Positive = setting(1, "Worker processes, each with its own Kafka producer.")
    write_keys_env: str = setting(
        "NUDGE_WRITE_KEYS", "The environment variable holding the write keys SDKs send "
                            "(comma-separated, so a key can be rotated).")
    topic: str = setting("", "Where accepted events go; empty: `kafka.topic`.")
    max_message_bytes: Positive = setting(32 * 1024, "A larger message is refused (413).")
    max_batch_bytes: Positive = setting(500 * 1024, "A larger request is refused (413).")
    ack_timeout: Duration = setting(
        parse_duration("10s"), "How long a request waits for the broker's acknowledgement "
                               "before it is answered 503 (the SDK retries).")
    shutdown_timeout: Duration = setting(
        parse_duration("30s"), "On SIGTERM: how long requests in flight may finish and "
                               "accepted events be flushed to Kafka.")
    metrics_dir: str = setting(
        "", "Where the workers' Prometheus counters live; empty: a fresh temporary directory.")


@dataclass(frozen=True, slots=True)
class TrackingConfig:
    enabled: bool = setting(
        False, "Rewrite the emails' links to `/c/{token}` and add the `/o/{token}` open pixel.")
    base_url: str = setting(
        "https://t.shop.example", "Where `nudge serve` answers (a CNAME on the shop's domain): "
                                  "tracking and unsubscribe links start with it.")
    machine_agents: tuple[str, ...] = setting(
        MACHINE_AGENTS, "User-Agent substrings of link scanners and mail-privacy proxies: "
                        "their opens and clicks are flagged `machine`.", shown="(scanners)")

    def problems(self) -> Iterator[tuple[str, str]]:
        if not self.base_url.startswith(("https://", "http://")):
            yield "base_url", "must start with https:// or http://"


@dataclass(frozen=True, slots=True)
class WebhooksConfig:
    sendgrid_public_key_env: str = setting(
        "NUDGE_SENDGRID_WEBHOOK_KEY", "SendGrid's Event Webhook verification key (base64 or "
                                      "PEM); the endpoint answers only when it is set.")
    postmark_user_env: str = setting("NUDGE_POSTMARK_WEBHOOK_USER",
                                     "The Basic-auth user Postmark's webhook URL carries.")
    postmark_password_env: str = setting("NUDGE_POSTMARK_WEBHOOK_PASSWORD",
                                         "Its password.")
    mailgun_signing_key_env: str = setting("NUDGE_MAILGUN_SIGNING_KEY",
                                           "Mailgun's HTTP webhook signing key.")
    max_age: Duration = setting(parse_duration("10m"),
                                "A signed webhook older than this is refused as a replay.")
