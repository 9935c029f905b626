"""chatq's lock-free metric cells render exactly what prometheus_client's own metrics would
for the same observations: prometheus_client is the oracle, and its parser reads both."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chatq.metrics.core import Counters, FamiliesCollector, Gauges, Histograms

BUCKETS = (0.01, 0.1, 1.0, 2.5, 10.0)
values = st.floats(min_value=0, max_value=100, allow_nan=False)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], Any]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")  # prometheus_client's own creation times
    }


def ours(*families: Counters | Gauges | Histograms) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FamiliesCollector(families))
    return registry


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), values), max_size=60))
def test_a_histogram_renders_as_prometheus_clients_does(
    observations: list[tuple[str, float]],
) -> None:
    theirs = CollectorRegistry()
    reference = Histogram("t_seconds", "doc", ["model"], buckets=BUCKETS, registry=theirs)
    mine = Histograms("t_seconds", "doc", ("model",), BUCKETS)
    for model in ("a", "b"):  # both have their series from the start, as labels() makes them
        reference.labels(model)
        mine.labels(model)
    for model, value in observations:
        reference.labels(model).observe(value)
        mine.labels(model).observe(value)
    got, expected = samples(ours(mine)), samples(theirs)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


@given(st.lists(st.tuples(st.sampled_from(["x", "y", "z"]), values), max_size=40))
def test_a_counter_renders_as_prometheus_clients_does(
    increments: list[tuple[str, float]],
) -> None:
    theirs = CollectorRegistry()
    reference = Counter("t_total", "doc", ["kind"], registry=theirs)
    mine = Counters("t_total", "doc", ("kind",))
    for kind, amount in increments:
        reference.labels(kind).inc(amount)
        mine.labels(kind).inc(amount)
    got, expected = samples(ours(mine)), samples(theirs)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key


def test_a_gauge_goes_up_and_down() -> None:
    gauge = Gauges("t_in_flight", "doc", ("backend",))
    cell = gauge.labels("b")
    for _ in range(3):
        cell.inc()
    cell.dec()
    assert samples(ours(gauge)) == {("t_in_flight", (("backend", "b"),)): 2.0}


def test_a_value_on_a_bound_counts_in_that_bound_bucket() -> None:
    """le means <=: an observation of exactly 1.0 is in the le="1.0" bucket."""
    histogram = Histograms("t_seconds", "doc", (), BUCKETS)
    histogram.labels().observe(1.0)
    rendered = samples(ours(histogram))
    assert rendered[("t_seconds_bucket", (("le", "0.1"),))] == 0
    assert rendered[("t_seconds_bucket", (("le", "1.0"),))] == 1


def test_labels_must_match_the_family() -> None:
    with pytest.raises(ValueError, match="has labels"):
        Counters("t_total", "doc", ("a", "b")).labels("only-one")
