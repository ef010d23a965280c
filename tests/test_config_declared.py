"""The config is declared once (nudge/core/configspec.py): loading, its one-line errors and
docs/configuration.md all come from the declarations."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from nudge.core.config import Config, load, load_text
from nudge.core.configspec import keys
from nudge.core.errors import ConfigError
from nudge.delivery.retry import RetryPolicy
from nudge.delivery.senders import retry_policy
from nudge.tools import configdoc

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("text", "path", "reason"), [
    # a choice
    ('[delivery]\ntransport = "fax"', "delivery.transport",
     "must be one of outbox, esp, smtp, kafka, none; got 'fax'"),
    ('[quiet_hours]\naction = "drop"', "quiet_hours.action",
     "must be one of defer, suppress; got 'drop'"),
    ('[triggers.x]\nentry = "a"\nstages = ["1h"]\nreentry = "twice"', "triggers.x.reentry",
     "must be one of once, after_exit, cooldown; got 'twice'"),
    # a duration, nested two tables deep
    ('[delivery.esp]\ntimeout = "ten seconds"', "delivery.esp.timeout",
     "invalid duration 'ten seconds' (use e.g. 30m, 1h, 24h, 7d)"),
    ('[delivery.smtp]\nbackoff_base = 500', "delivery.smtp.backoff_base",
     "expected a string, got 500"),
    ('[triggers.x]\nentry = "a"\nstages = [{ delay = "soon" }]', "triggers.x.stages[0].delay",
     "invalid duration 'soon' (use e.g. 30m, 1h, 24h, 7d)"),
    # a wrong type
    ("[kafka]\ntail = 1", "kafka.tail", "expected a boolean, got 1"),
    ('[caps]\nmax_emails = "2"', "caps.max_emails", "expected an integer, got '2'"),
    ("[caps]\nmax_emails = true", "caps.max_emails", "expected an integer, got a boolean"),
    ('[events]\nignore = ["a", 2]', "events.ignore[1]", "expected a string, got 2"),
    ('delivery = "esp"', "delivery", "expected a table, got str"),
    ("[model]\nprior = true", "model.prior", "expected an integer or a number, got a boolean"),
    # a bound
    ("shards = 0", "shards", "must be at least 1, got 0"),
    ("[delivery]\nrate_limit = -1", "delivery.rate_limit", "must be at least 0, got -1"),
    ("[delivery.kafka]\nmax_attempts = 0", "delivery.kafka.max_attempts",
     "must be at least 1, got 0"),
    ("[model]\nprior = 1", "model.prior", "must be between 0 and 1 (exclusive), got 1.0"),
    ("[model]\nlearning_rate = 0", "model.learning_rate",
     "must be more than 0 and at most 1, got 0.0"),
    ('[recommendations]\nhalf_life = "0m"', "recommendations.half_life",
     "must be more than 0, got 0"),
    ('[triggers.x]\nentry = "a"\nstages = ["1h"]\nholdout = 1.5', "triggers.x.holdout",
     "must be between 0 and 1, got 1.5"),
    # an unknown key, at every depth
    ("[caps]\nmax = 2", "caps.max", "unknown key (check the spelling)"),
    ("colour = 1", "colour", "unknown key (check the spelling)"),
    ("[delivery.esp]\nretries = 2", "delivery.esp.retries", "unknown key (check the spelling)"),
    ("[delivery.outbox]\nmax_attempts = 2", "delivery.outbox", "unknown key (check the spelling)"),
    ("[features.engagement_weights]\nlike = 2", "features.engagement_weights.like",
     "unknown key (check the spelling)"),
    ('[triggers.x]\nentry = "a"\nstages = [{ delay = "1h", variants = [{ name = "a", '
     'colour = 1 }] }]', "triggers.x.stages[0].variants[0].colour",
     "unknown key (check the spelling)"),
    ('[segments.vip]\nrule = "orders_30d > 1"\nname = "x"', "segments.vip.name",
     "unknown key (check the spelling)"),
    # required keys and the checks across keys
    ('[triggers.x]\nstages = ["1h"]', "triggers.x.entry",
     "a trigger needs an entry event (or 'segment:<name>')"),
    ("[segments.vip]\n", "segments.vip.rule", "a segment needs a rule"),
    ('[triggers.x]\nentry = "a"\nstages = [{ template = "t" }]', "triggers.x.stages[0].delay",
     "required (this table needs it)"),
    ('[quiet_hours]\nenabled = true\nstart = "08:00"', "quiet_hours.end",
     "quiet hours must not start and end at the same time"),
    ("[features]\nnew_days = 100", "features.lapsed_days",
     "needs new_days < lapsed_days < churned_days"),
    ('[triggers.x]\nentry = "a"\nstages = [{ delay = "1h", variants = [{ name = "a" }, '
     '{ name = "a" }] }]', "triggers.x.stages[0].variants", "variant names must be unique"),
])
def test_each_kind_of_bad_value_is_one_line_naming_the_key_path(
        text: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    assert (info.value.path, info.value.reason) == (path, reason)
    assert str(info.value) == f"config {path}: {reason}"
    assert "\n" not in str(info.value)


def test_values_are_read_with_their_declared_types() -> None:
    cfg = load_text("""
shards = 8
[kafka]
brokers = ["a:9092", "b:9092"]
client_config = { "security.protocol" = "SASL_SSL", "session.timeout.ms" = 6000 }
[quiet_hours]
enabled = true
start = "22:30"
action = "suppress"
[delivery]
transport = "kafka"
[delivery.kafka]
max_attempts = 3
[delivery.smtp]
timeout = "1m"
[features.engagement_weights]
order = 10
[model]
prior = 0.2
""")
    assert cfg.shards == 8
    assert cfg.kafka.brokers == ("a:9092", "b:9092")
    assert cfg.kafka.client_config == (("security.protocol", "SASL_SSL"),
                                       ("session.timeout.ms", "6000"))
    assert (cfg.quiet_hours.start, cfg.quiet_hours.end, cfg.quiet_hours.action) == (
        22 * 60 + 30, 8 * 60, "suppress")
    assert cfg.delivery.smtp.timeout == 60_000
    assert dict(cfg.features.engagement_weights)["order"] == 10.0
    assert cfg.model.prior == 0.2
    assert cfg.delivery.kafka.max_attempts == 3


def test_an_empty_file_is_the_defaults() -> None:
    assert load_text("") == Config() == load(None)


def test_each_transport_retries_with_its_own_keys() -> None:
    text = """[delivery.esp]\nmax_attempts = 2\nbackoff_base = "1s"\nbackoff_max = "4s"
[delivery.smtp]\nmax_attempts = 3\nbackoff_base = "2s"\nbackoff_max = "8s"
[delivery.kafka]\nmax_attempts = 4\n"""

    def policy(transport: str) -> RetryPolicy:
        return retry_policy(load_text(f'{text}[delivery]\ntransport = "{transport}"\n'))

    assert policy("esp") == RetryPolicy(2, 1000, 4000)
    assert policy("smtp") == RetryPolicy(3, 2000, 8000)
    assert policy("kafka").max_attempts == 4
    assert policy("outbox").max_attempts == 1  # a local write: a failure is dead-lettered


def test_every_key_is_documented() -> None:
    assert [path for path, doc in _all_keys() if not doc.strip()] == []


def _all_keys() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def walk(cls: type, path: str) -> None:
        for key in keys(cls):
            out.append((f"{path}{key.name}", key.doc))
            item = key.item()
            if item is not None:
                walk(item, f"{path}{key.name}.")

    walk(Config, "")
    return out


def test_the_reference_names_every_key_with_its_doc() -> None:
    text = configdoc.render()
    for cls in _declared_classes(Config):
        for key in keys(cls):
            if dataclasses.is_dataclass(key.base) or key.named:
                continue
            row = re.search(rf"^\| `{key.name}` \|.*\| {re.escape(key.doc)} \|$", text, re.M)
            assert row, f"{cls.__name__}.{key.name} missing from the reference"


def _declared_classes(cls: type) -> list[type]:
    out = [cls]
    for key in keys(cls):
        item = key.item()
        if item is not None and item not in out:
            out += [c for c in _declared_classes(item) if c not in out]
    return out


def test_docs_configuration_md_is_current() -> None:
    """Regenerate with `python -m nudge.tools.configdoc --write` after changing a key."""
    doc = ROOT / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == configdoc.render(), (
        "docs/configuration.md is not current: run `python -m nudge.tools.configdoc --write`")


def test_shipped_configs_load() -> None:
    for path in [ROOT / "nudge" / "data" / "demo.toml", ROOT / "docker" / "nudge.toml"]:
        assert isinstance(load(path), Config)
