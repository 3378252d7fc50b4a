"""The per-target series of ``/metrics``: a few numbers per target, written out at scrape time.

prometheus_client keeps an object per labelled series (its value, a lock, its names), about
1 KB each: the 17 series rotator shows for every target (outcome counters, the phase, blocked,
paused, timestamps) cost 14 KB per target, 140 MB for 10,000 targets, nearly all of a daemon's
memory budget for that many (issue 15: 150 MB). Here a target's series are the fields of one
slotted object, and a collector writes them out as the same metric families (names, help,
labels and types as before, ``_total`` and ``_created`` included) when Prometheus scrapes.

Counters only grow; a gauge with nothing to say (no next rotation while one is under way) has
no series, as before.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from rotator.core.record import Phase

RESULTS = ("completed", "emergency", "blocked", "failed")
KINDS = ("temporary", "permanent")
_PHASES = tuple(Phase)
#: Gauges of one value per target: (attribute, name, help).
_GAUGES = (
    ("blocked", "rotator_target_blocked", "1 while the target needs an operator"),
    (
        "paused",
        "rotator_target_paused",
        "1 while an operator's 'rotator pause' holds the target (no create, store or delete)",
    ),
    (
        "pass_failing",
        "rotator_target_pass_failing",
        (
            "1 while the target's passes fail before deciding (Vault unreachable or refusing, "
            "a damaged record): nothing can be recorded, not even 'blocked'"
        ),
    ),
    (
        "last_success",
        "rotator_last_successful_rotation_timestamp_seconds",
        "When the last rotation finished (unix seconds)",
    ),
    (
        "next_rotation",
        "rotator_next_rotation_timestamp_seconds",
        "When the next rotation is due (unix seconds; idle targets with a known schedule)",
    ),
    (
        "deadline",
        "rotator_rollout_deadline_timestamp_seconds",
        "When the rollout's grace ends (unix seconds; while awaiting rollout)",
    ),
)


@dataclass(slots=True)
class _Series:
    """One target's series. ``None``: no series (a gauge not shown yet, or dropped)."""

    created: float
    rotations: list[float] = field(default_factory=lambda: [0.0] * len(RESULTS))
    failures: list[float] = field(default_factory=lambda: [0.0] * len(KINDS))
    pass_failing: float | None = 0.0
    phase: Phase | None = None
    blocked: float | None = None
    paused: float | None = None
    last_success: float | None = None
    next_rotation: float | None = None
    deadline: float | None = None
    #: The rollout-wait histogram: a count per bucket (not cumulative, +Inf last), its sum,
    #: and when its first observation came; ``None`` until one did.
    awaited: list[int] | None = None
    awaited_sum: float = 0.0
    awaited_created: float = 0.0


class TargetSeries(Collector):
    """Every target's series, thread-safe; register it once in the metrics' registry."""

    def __init__(
        self, awaited_buckets: Sequence[float], wall: Callable[[], float] = time.time
    ) -> None:
        self._buckets = tuple(awaited_buckets)
        self._wall = wall
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {}

    def prepare(self, name: str) -> None:
        """Every outcome counter of ``name`` exists from now on, at 0 (so ``increase()`` sees
        the first one), and its pass-failing gauge too."""
        with self._lock:
            self._get(name)

    def count(self, name: str, result: str, kind: str | None = None) -> None:
        """One more ``result`` (``RESULTS``), and a failure of ``kind`` (``KINDS``) if given."""
        with self._lock:
            series = self._get(name)
            series.rotations[RESULTS.index(result)] += 1
            if kind is not None:
                series.failures[KINDS.index(kind)] += 1

    def failing(self, name: str, *, failing: bool) -> None:
        with self._lock:
            self._get(name).pass_failing = 1.0 if failing else 0.0

    def show(
        self,
        name: str,
        phase: Phase,
        *,
        paused: bool,
        last_success: float | None,
        next_rotation: float | None,
        deadline: float | None,
    ) -> None:
        """What a record says: its phase, and the timestamps it has (``None``: no series)."""
        with self._lock:
            series = self._get(name)
            series.phase = phase
            series.blocked = 1.0 if phase is Phase.BLOCKED else 0.0
            series.paused = 1.0 if paused else 0.0
            series.last_success = last_success
            series.next_rotation = next_rotation
            series.deadline = deadline

    def observe_awaited(self, name: str, seconds: float) -> None:
        with self._lock:
            series = self._get(name)
            if series.awaited is None:
                series.awaited = [0] * (len(self._buckets) + 1)
                series.awaited_created = self._wall()
            index = next(
                (i for i, b in enumerate(self._buckets) if seconds <= b), len(self._buckets)
            )
            series.awaited[index] += 1
            series.awaited_sum += seconds

    def _get(self, name: str) -> _Series:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _Series(created=self._wall())
        return series

    # --- the scrape ---------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        rotations = CounterMetricFamily(
            "rotator_rotations", "Rotation outcomes", labels=["target", "result"]
        )
        failures = CounterMetricFamily(
            "rotator_failures", "Failed attempts, by kind", labels=["target", "kind"]
        )
        phase = GaugeMetricFamily(
            "rotator_target_phase", "1 for the target's phase", labels=["target", "phase"]
        )
        gauges = {
            attribute: GaugeMetricFamily(metric, text, labels=["target"])
            for attribute, metric, text in _GAUGES
        }
        awaited = HistogramMetricFamily(
            "rotator_awaiting_rollout_seconds",
            "How long completed rotations waited from stored to confirmed (or finished)",
            labels=["target"],
        )
        with self._lock:
            for name, s in self._series.items():
                for result, value in zip(RESULTS, s.rotations, strict=True):
                    rotations.add_metric([name, result], value, created=s.created)
                for kind, value in zip(KINDS, s.failures, strict=True):
                    failures.add_metric([name, kind], value, created=s.created)
                if s.phase is not None:
                    for p in _PHASES:
                        phase.add_metric([name, p.value], 1.0 if s.phase is p else 0.0)
                for attribute, family in gauges.items():
                    value = getattr(s, attribute)
                    if value is not None:
                        family.add_metric([name], value)
                if s.awaited is not None:
                    self._histogram(awaited, name, s)
        return [rotations, failures, phase, *gauges.values(), awaited]

    def _histogram(self, family: HistogramMetricFamily, name: str, s: _Series) -> None:
        counts = s.awaited or []
        cumulative, buckets = 0, []
        for bound, count in zip((*self._buckets, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric([name], buckets, s.awaited_sum)
        family.add_sample(f"{family.name}_created", {"target": name}, s.awaited_created)


def _le(bound: float) -> str:
    """A bucket's ``le`` as prometheus_client writes it (Go's float format: ``3600.0``,
    ``1.2096e+06``, ``+Inf``)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]  # untyped upstream
