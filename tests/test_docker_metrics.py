"""docker/: the Grafana dashboard and the Prometheus alerts read metrics Nudge exports, and
the compose file mounts provisioning files that exist (no Docker engine here to run them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import nudge.core.metrics  # noqa: F401  (registers the metrics)

DOCKER = Path(__file__).resolve().parents[1] / "docker"


def _exported() -> set[str]:
    """Every series name the registry can export (labelled metrics export nothing until a
    label set is used, so the registry's name index, which holds _total, _bucket...)."""
    return set(REGISTRY._names_to_collectors)


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bnudge_[a-z_]+", text)) - {"nudge_signing_key", "nudge_key"}


def test_dashboard_and_alerts_read_exported_metrics() -> None:
    dash = json.loads((DOCKER / "grafana/dashboards/nudge.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    alerts = (DOCKER / "prometheus/alerts.yml").read_text()
    exported = _exported()
    for name in ("nudge_emails_sent_total", "nudge_emails_failed_total",
                 "nudge_send_retries_total", "nudge_emails_in_flight",
                 "nudge_due_to_sent_seconds_bucket"):
        assert name in exprs and name in exported
    missing = (_referenced(exprs) | _referenced(alerts)) - exported
    assert not missing, f"dashboard/alerts use metrics nobody exports: {sorted(missing)}"
    uid = {p["datasource"]["uid"] for p in dash["panels"] if "datasource" in p}
    assert uid == {"prometheus"}
    assert "uid: prometheus" in (DOCKER / "grafana/provisioning/datasources/prometheus.yaml") \
        .read_text()


def test_compose_provisions_prometheus_and_grafana_from_files_that_exist() -> None:
    compose = (DOCKER / "compose.yaml").read_text()
    assert re.search(r"^  prometheus:$", compose, re.M)
    assert re.search(r"^  grafana:$", compose, re.M)
    for mount in re.findall(r"- \./([\w./-]+):", compose):
        if not mount.startswith("secrets/"):
            assert (DOCKER / mount).exists(), f"compose mounts docker/{mount}, which is missing"
    prom = (DOCKER / "prometheus/prometheus.yml").read_text()
    assert "nudge:3030" in prom and "/etc/prometheus/alerts.yml" in prom
