"""deploy/grafana-dashboard.json asks only for series a real daemon exports.

A daemon (tests/support/daemon.py) with a hosts file, a loopback upstream and the real engine as
its Docker source answers a few questions, so that every labelled counter has samples; then every
metric name in every dashboard expression (panels and template variables) must be a sample name of
its /metrics, and every label an expression matches or groups by must be one of that series'
labels, or one Prometheus adds to every scraped series (``instance``, ``job``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import REPO, dockdns
from tests.support.engine import require_engine
from tests.support.net import ask
from tests.support.quiet_upstream import answering_upstream
from tests.support.scrape import Samples, scrape

pytestmark = pytest.mark.docker

DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
TARGET_LABELS = {"instance", "job"}  # added by Prometheus at scrape time, not by dockdns
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}
IDENTIFIER = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


def expressions(node: Any) -> Iterator[str]:
    """Every ``expr`` of a panel target, and every template variable's query, in the JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key == "definition" and isinstance(value, str):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def series_and_labels(expr: str) -> tuple[set[str], set[str]]:
    """The metric names an expression reads, and the label names it matches or groups by."""
    names: set[str] = set()
    labels: set[str] = set()
    for metric, label in re.findall(rf"label_values\(\s*({IDENTIFIER})\s*,\s*(\w+)\s*\)", expr):
        names.add(metric)
        labels.add(label)
    expr = re.sub(rf"label_values\(\s*{IDENTIFIER}\s*,\s*\w+\s*\)", " ", expr)
    for body in re.findall(r"\{([^}]*)\}", expr):
        labels.update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges: [5m], [$__rate_interval]
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        labels.update(label.strip() for label in grouping.split(",") if label.strip())
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)  # Grafana variables
    for token in re.findall(rf"(?<![\w.:])({IDENTIFIER})(?![\w:]|\s*\()", expr):
        if token.lower() not in PROMQL_WORDS:
            names.add(token)
    return names, labels


def test_the_parser_finds_names_and_labels() -> None:
    names, labels = series_and_labels(
        'histogram_quantile(0.9, sum by (le) (rate(a_bucket{instance=~"$x", o!="ok"}[5m]))) '
        "/ on (job) b_total + time() - c")
    assert names == {"a_bucket", "b_total", "c"}
    assert labels == {"le", "instance", "o", "job"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Samples:
    require_engine()
    hosts = Path(tmp_path_factory.mktemp("dashboard")) / "hosts"
    hosts.write_text("10.66.0.1 dash-web\n")
    with answering_upstream({"dash-ext.test": "198.51.100.66"}) as upstream, \
            dockdns("--hosts-file", str(hosts), "--upstream", upstream, docker=True) as daemon:
        assert daemon.metrics_port is not None
        # Something in every labelled family: a local answer, a forwarded one and its cache hit.
        for name in ("dash-web", "dash-ext.test", "dash-ext.test", "dash-nothing.test"):
            ask(daemon.host, daemon.port, name)
        return scrape(daemon.metrics_port)


def test_every_dashboard_series_is_exported(exported: Samples) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    labels_of: dict[str, set[str]] = {}
    for name, labels in exported:
        labels_of.setdefault(name, set()).update(key for key, _ in labels)
    found = list(expressions(dashboard))
    assert len(found) >= 15, found
    used: set[str] = set()
    for expr in found:
        names, labels = series_and_labels(expr)
        assert names, expr
        missing = names - set(labels_of)
        assert not missing, f"{expr}: not exported: {sorted(missing)}"
        known = TARGET_LABELS.union(*(labels_of[name] for name in names))
        assert labels <= known, f"{expr}: no such label: {sorted(labels - known)}"
        used |= names
    # The dashboard covers every area the README's metric table lists.
    for family in ("dockdns_queries_total", "dockdns_query_duration_seconds_bucket",
                   "dockdns_cache_hits_total", "dockdns_upstream_requests_total",
                   "dockdns_registry_names", "dockdns_docker_events_total",
                   "dockdns_docker_connected", "dockdns_last_sync_timestamp_seconds"):
        assert family in used, family
