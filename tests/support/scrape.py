"""Scrape a daemon's /metrics over HTTP and read samples by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import http_get

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    status, _, body = http_get(port, "/metrics")
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when it is absent (a counter that has not counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
