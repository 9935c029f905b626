"""Reading /metrics as Prometheus does: prometheus_client's own parser, never a regex."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, labels: Mapping[str, str] | None = None) -> float:
    """A sample's value; 0 for a series the process has not made yet."""
    return samples.get((name, frozenset((labels or {}).items())), 0.0)


def this_process() -> Samples:
    """This test process's own metrics (those of the workers it runs in process)."""
    return parse(generate_latest(REGISTRY).decode())


def scrape(url: str, key: str | None = None) -> Samples:
    """GET url (a /metrics), which must answer 200 in the text format."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def label_values(samples: Samples) -> set[str]:
    """Every label value of every sample (le and quantile bounds left out)."""
    return {v for _, labels in samples for k, v in labels if k not in ("le", "quantile")}
