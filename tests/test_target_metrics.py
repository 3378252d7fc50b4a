"""The compact per-target series expose what prometheus_client's own labelled metrics did."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rotator.core.record import Phase
from rotator.daemon.metrics import ROLLOUT_BUCKETS
from rotator.daemon.target_metrics import KINDS, RESULTS, TargetSeries


def _samples(
    registry: CollectorRegistry,
) -> dict[tuple[str, str, tuple[tuple[str, str], ...]], float]:
    """Every sample but ``_created`` (a wall-clock moment), keyed by family type, name, labels."""
    text = generate_latest(registry).decode()
    return {
        (family.type, sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_compact_series_match_prometheus_clients_own() -> None:
    """The same events shown both ways give the same families, types, labels and values."""
    compact = CollectorRegistry()
    series = TargetSeries(ROLLOUT_BUCKETS)
    compact.register(series)
    reference = CollectorRegistry()
    r = reference
    rotations = Counter("rotator_rotations", "Rotation outcomes", ["target", "result"], registry=r)
    failures = Counter(
        "rotator_failures", "Failed attempts, by kind", ["target", "kind"], registry=r
    )
    phase = Gauge(
        "rotator_target_phase", "1 for the target's phase", ["target", "phase"], registry=r
    )
    one = {
        name: Gauge(name, "help", ["target"], registry=r)
        for name in (
            "rotator_target_blocked",
            "rotator_target_paused",
            "rotator_target_pass_failing",
            "rotator_last_successful_rotation_timestamp_seconds",
            "rotator_next_rotation_timestamp_seconds",
        )
    }
    awaited = Histogram(
        "rotator_awaiting_rollout_seconds", "h", ["target"], buckets=ROLLOUT_BUCKETS, registry=r
    )

    for name in ("web", "ios"):  # both: every outcome at 0, pass_failing 0
        series.prepare(name)
        for result in RESULTS:
            rotations.labels(name, result)
        for kind in KINDS:
            failures.labels(name, kind)
        one["rotator_target_pass_failing"].labels(name).set(0)
    series.count("web", "completed")
    rotations.labels("web", "completed").inc()
    series.count("web", "failed", "temporary")
    rotations.labels("web", "failed").inc()
    failures.labels("web", "temporary").inc()
    series.failing("ios", failing=True)
    one["rotator_target_pass_failing"].labels("ios").set(1)
    series.show(
        "web", Phase.IDLE, paused=True, last_success=100.0, next_rotation=200.0, deadline=None
    )
    for p in Phase:
        phase.labels("web", p.value).set(1 if p is Phase.IDLE else 0)
    one["rotator_target_blocked"].labels("web").set(0)
    one["rotator_target_paused"].labels("web").set(1)
    one["rotator_last_successful_rotation_timestamp_seconds"].labels("web").set(100)
    one["rotator_next_rotation_timestamp_seconds"].labels("web").set(200)
    for seconds in (0.5, 3600.0, 90000.0, 10**9):
        series.observe_awaited("web", seconds)
        awaited.labels("web").observe(seconds)

    assert _samples(compact) == _samples(reference)


def test_a_gauge_with_nothing_to_say_has_no_series() -> None:
    """A next rotation shown, then unknown (a rotation under way): its series goes away."""
    registry = CollectorRegistry()
    series = TargetSeries(ROLLOUT_BUCKETS)
    registry.register(series)
    series.show(
        "web", Phase.IDLE, paused=False, last_success=None, next_rotation=5.0, deadline=None
    )
    name = "rotator_next_rotation_timestamp_seconds"
    assert registry.get_sample_value(name, {"target": "web"}) == 5.0
    series.show(
        "web", Phase.CREATING, paused=False, last_success=None, next_rotation=None, deadline=None
    )
    assert registry.get_sample_value(name, {"target": "web"}) is None
    assert (
        registry.get_sample_value("rotator_target_phase", {"target": "web", "phase": "creating"})
        == 1
    )
