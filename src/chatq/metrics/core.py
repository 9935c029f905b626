"""Metric families whose cells are plain numbers, rendered by prometheus_client.

chatq updates its metrics on the event loop's thread only (jobs, deliveries and HTTP requests
all run there, and so does a scrape), so a cell needs no lock: an observation is an attribute
update, a few hundred nanoseconds. prometheus_client's own Counter and Histogram take a lock
and check exemplars on every call, about 2 µs for a histogram's: at the queue drain's pace
(about 75 µs of worker time per job) the handful a job makes would have cost a tenth of it.
prometheus_client still does the rest: the families, the text format, its process and
garbage-collector collectors, and (in the tests) the parser.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)


class CounterCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class GaugeCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class HistogramCell:
    """Counts per bucket (not cumulative: they are added up when rendered), and the sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound counts in that bound's bucket (le is <=).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


C = TypeVar("C", CounterCell, GaugeCell, HistogramCell)


class Family(Generic[C]):
    """A metric with labels: one cell per combination of label values, made on first use."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], make: Callable[[], C]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labels)
        self._make: Callable[[], C] = make
        self._cells: dict[tuple[str, ...], C] = {}

    def labels(self, *values: str) -> C:
        cell = self._cells.get(values)
        if cell is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} has labels {self.labelnames}, given {values}")
            cell = self._cells[values] = self._make()
        return cell

    def cells(self) -> list[tuple[tuple[str, ...], C]]:
        return list(self._cells.items())


class Counters(Family[CounterCell]):
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        super().__init__(name, documentation, labels, CounterCell)

    def collect(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, cell in self.cells():
            family.add_metric(values, cell.value)
        return family


class Gauges(Family[GaugeCell]):
    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        super().__init__(name, documentation, labels, GaugeCell)

    def collect(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, cell in self.cells():
            family.add_metric(values, cell.value)
        return family


class Histograms(Family[HistogramCell]):
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        bounds = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        super().__init__(name, documentation, labels, lambda: HistogramCell(bounds))
        # As prometheus_client writes its bounds: 0.005, 1.0, 10.0, +Inf.
        self._les = [repr(b) for b in bounds] + ["+Inf"]

    def collect(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, cell in self.cells():
            total = 0
            buckets: list[tuple[str, float]] = []
            for le, count in zip(self._les, cell.counts, strict=True):
                total += count
                buckets.append((le, total))
            family.add_metric(values, buckets, cell.sum)
        return family


Collectable = Counters | Gauges | Histograms


class FamiliesCollector:
    """The families, as one prometheus_client collector."""

    def __init__(self, families: Sequence[Collectable]) -> None:
        self.families = tuple(families)

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield family.collect()
