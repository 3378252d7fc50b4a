"""Prometheus metrics for the daemon's ``/metrics``: what each target is doing, and how the
outside systems answer.

Theory of operation
-------------------
``Metrics`` is a ``RecordListener``: the reconciler tells it of every record it persisted, and
it derives everything per target from the pair (before, after), so the metrics say exactly what
Vault holds and nothing else:

* counters of outcomes: a rotation completed (a history entry appeared; ``emergency`` when it
  was one), a target became blocked, an attempt failed (``attempts`` grew);
* gauges of state: the phase (all five, one of them 1), blocked, paused, the last success, the next
  scheduled rotation (only while idle and known), the rollout deadline (only while awaiting),
  and each named consumer's rollout state and probed instances (only while rotating);
* values that move with time (the age of the secret consumers hold, the backoff left, how long
  the rollout has been awaited) are computed at scrape time from the last record, with the
  injected clock, so they are right however long ago the last transition was.

The Intercom client and the Vault adapter report each HTTP attempt through ``intercom_request``
and ``vault_request`` (operation, status, seconds) and each failed Vault login through
``vault_auth_failed``; the daemon's scheduler reports each run it skipped (the previous one
still going) through ``scheduler_run_skipped``. The daemon seeds the gauges from every target's
stored record at start.

Labels hold only target names, phases, operations and HTTP statuses: never an id or a secret.
Each instance has its own registry, so tests and several daemons in one process never clash.
The metric names are the ones ``deploy/prometheus/alerts.yaml`` relies on.

Only daemon code imports this module: ``prometheus_client`` stays out of the CLI's cold start.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import rotator
from rotator.config import TargetSettings
from rotator.config.consumers import consumer_rules
from rotator.core import rollout
from rotator.core.record import Phase, Record
from rotator.daemon.target_metrics import TargetSeries
from rotator.vault.reasons import reason_of

#: Seconds: quick API calls up to a read timeout.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Seconds: an emergency's instant up to a month of waiting for a hook.
_HOUR, _DAY = 3600.0, 86400.0
ROLLOUT_BUCKETS: tuple[float, ...] = (1.0, 60.0, 300.0, 900.0, _HOUR, 4 * _HOUR, 12 * _HOUR)
ROLLOUT_BUCKETS += (_DAY, 2 * _DAY, 3 * _DAY, 7 * _DAY, 14 * _DAY, 30 * _DAY)
ROLLOUT_STATES = ("confirmed", "waiting", "stalled")


@dataclass(frozen=True, slots=True)
class _Moment:
    """What the scrape-time values need from a target's last record."""

    secret_since: datetime | None
    retry_at: datetime | None
    awaiting_since: datetime | None


@dataclass(frozen=True, slots=True)
class _Seen:
    """What counting needs of the last record shown, without keeping the record (3.7 KB each,
    37 MB for 10,000 idle targets): its last history entry, phase and attempts, and a digest
    that tells a changed record from the same one."""

    digest: int | Record
    last_entry: Any
    phase: Phase
    attempts: int

    @classmethod
    def of(cls, record: Record) -> _Seen:
        try:
            digest: int | Record = hash(record)
        except TypeError:  # a field that cannot be hashed: keep the record itself
            digest = record
        last = record.history[-1] if record.history else None
        return cls(digest, last, record.phase, record.attempts)

    def same_as(self, record: Record) -> bool:
        if isinstance(self.digest, int):
            try:
                return self.digest == hash(record)
            except TypeError:
                return False
        return self.digest == record


class Metrics:
    """Every rotator metric, in its own registry; a ``RecordListener``."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        version: str = rotator.__version__,
    ) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._moments: dict[str, _Moment] = {}
        # The last record each target was shown with: what another process changed is counted
        # against it when a pass next reads the record (on_seen).
        self._last: dict[str, _Seen] = {}
        r = self.registry
        # Per-target series: compact, written out at scrape time (``target_metrics``).
        self.targets = TargetSeries(ROLLOUT_BUCKETS)
        r.register(self.targets)
        self.intercom = Counter(
            "rotator_intercom_requests",
            "HTTP attempts at Intercom, by HTTP status ('error': no answer)",
            ["operation", "status"],
            registry=r,
        )
        self.intercom_seconds = Histogram(
            "rotator_intercom_request_duration_seconds",
            "Duration of HTTP attempts at Intercom",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.vault = Counter(
            "rotator_vault_requests",
            "Requests to Vault, by HTTP status ('error': no answer)",
            ["operation", "status"],
            registry=r,
        )
        # By why it was made (``rotator.vault.reasons``): what an idle daemon still asks.
        self.vault_reasons = Counter(
            "rotator_vault_requests_by_reason",
            "Requests to Vault, by why they were made (sweep, due, deadline, retry, hook, ...)",
            ["reason"],
            registry=r,
        )
        self.vault_seconds = Histogram(
            "rotator_vault_request_duration_seconds",
            "Duration of requests to Vault",
            ["operation"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.vault_auth_failures = Counter(
            "rotator_vault_auth_failures", "Failed Vault logins and dead tokens", registry=r
        )
        self.scheduler_skipped = Counter(
            "rotator_scheduler_runs_skipped",
            "Scheduled runs skipped because the previous run of the job was still going",
            registry=r,
        )
        self.rollout_consumers = Gauge(
            "rotator_rollout_consumers",
            "1 for each named consumer's state while a rotation awaits its rollout "
            "(confirmed, waiting, stalled)",
            ["target", "consumer", "state"],
            registry=r,
        )
        self.rollout_instances = Gauge(
            "rotator_rollout_instances",
            "Instances of a probed consumer the last probe round found, and switched of them",
            ["target", "consumer", "state"],
            registry=r,
        )
        self.probe_requests = Counter(
            "rotator_probe_requests",
            "Probes of consumer instances, by outcome ('switched' is not judged here: 'answered')",
            ["outcome"],
            registry=r,
        )
        self.probe_round_seconds = Histogram(
            "rotator_probe_round_seconds",
            "Duration of one target's probe round",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        build = Gauge("rotator_build_info", "rotator's version", ["version"], registry=r)
        build.labels(version=version).set(1)
        r.register(_ScrapeTime(self))

    # --- the listener -------------------------------------------------------------------------

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        """Count what changed between ``before`` and ``after``, then show ``after``."""
        del reason  # a free-text reason would be an unbounded label
        self._count(_Seen.of(before) if before is not None else None, after, target)

    def _count(self, before: _Seen | None, after: Record, target: TargetSettings) -> None:
        name = target.name
        self._prepare(name)
        entry = after.history[-1] if after.history else None
        series = self.targets
        if entry is not None and (before is None or before.last_entry != entry):
            series.count(name, "emergency" if entry.emergency else "completed")
            if entry.stored_at is not None:
                waited = (entry.confirmed_at or entry.finished_at) - entry.stored_at
                series.observe_awaited(name, max(0.0, waited.total_seconds()))
        if after.phase is Phase.BLOCKED and (before is None or before.phase is not Phase.BLOCKED):
            series.count(name, "blocked", "permanent")
        if after.attempts > (before.attempts if before else 0):
            series.count(name, "failed", "temporary")
        with self._lock:
            self._show(after, target)
            self._last[name] = _Seen.of(after)
        series.failing(name, failing=False)

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """A pass read ``record`` (or failed with ``error``): count and show what changed since
        this process last showed it, whoever changed it."""
        name = target.name
        self._prepare(name)
        if error is not None or record is None:
            self.targets.failing(name, failing=error is not None)
            return
        previous = self._last.get(name)
        if previous is None:
            self.seed(target, record)  # first sight: show it, count nothing from its past
        elif not previous.same_as(record):
            self._count(previous, record, target)
        self.targets.failing(name, failing=False)

    def seed(self, target: TargetSettings, record: Record | None) -> None:
        """Show a target's stored record at start, unless a transition already did."""
        self._prepare(target.name)
        with self._lock:
            if record is not None and target.name not in self._moments:
                self._show(record, target)
                self._last[target.name] = _Seen.of(record)

    # --- the adapters' hooks --------------------------------------------------------------------

    def intercom_request(self, operation: str, status: str, seconds: float) -> None:
        self.intercom.labels(operation, status).inc()
        self.intercom_seconds.labels(operation).observe(seconds)

    def vault_request(self, operation: str, status: str, seconds: float) -> None:
        self.vault.labels(operation, status).inc()
        self.vault_reasons.labels(reason_of(operation)).inc()
        self.vault_seconds.labels(operation).observe(seconds)

    def vault_auth_failed(self) -> None:
        self.vault_auth_failures.inc()

    def scheduler_run_skipped(self) -> None:
        self.scheduler_skipped.inc()

    def wsgi_app(self) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
        """The ``/metrics`` WSGI app for this registry (text format; OpenMetrics if asked)."""
        app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
        app = make_wsgi_app(self.registry)
        return app

    # --- inside ---------------------------------------------------------------------------------

    def _prepare(self, name: str) -> None:
        self.targets.prepare(name)

    def _show(self, record: Record, target: TargetSettings) -> None:
        name = target.name
        last = record.history[-1] if record.history else None
        upcoming = None
        if record.phase is Phase.IDLE and record.last_rotation_at is not None:
            upcoming = target.schedule.next_after(record.last_rotation_at)
        awaiting = record.phase is Phase.AWAITING_ROLLOUT
        self.targets.show(
            name,
            record.phase,
            paused=record.paused is not None,
            last_success=_timestamp(last.finished_at if last else None),
            next_rotation=_timestamp(upcoming),
            deadline=_timestamp(record.deadline if awaiting else None),
        )
        self._show_rollout(record, target)
        self._moments[name] = _Moment(
            secret_since=_secret_since(record),
            retry_at=record.retry_at,
            awaiting_since=record.stored_at if awaiting else None,
        )

    def _show_rollout(self, record: Record, target: TargetSettings) -> None:
        """Per named consumer, while a rotation is under way; no series otherwise."""
        rules = consumer_rules(target.consumers)
        shown = rollout.states(record, rules, target.confirmation) if record.rotating else []
        for consumer in target.consumers:
            for state in ROLLOUT_STATES:
                with contextlib.suppress(KeyError):
                    self.rollout_consumers.remove(target.name, consumer.name, state)
            for state in ("found", "switched"):
                with contextlib.suppress(KeyError):
                    self.rollout_instances.remove(target.name, consumer.name, state)
        for c in shown:
            for state in ROLLOUT_STATES:
                self.rollout_consumers.labels(target.name, c.name, state).set(
                    1 if c.state == state else 0
                )
            if c.found is not None and c.switched is not None:
                self.rollout_instances.labels(target.name, c.name, "found").set(c.found)
                self.rollout_instances.labels(target.name, c.name, "switched").set(c.switched)

    def probe_round(self, target: str, seconds: float, outcomes: Mapping[str, int]) -> None:
        """A probe round of ``target`` ended (``rotator.probe``): its duration and the outcome
        of each instance's answer ("ok", or an error kind: a fixed set)."""
        del target  # the outcome counts are per process; a target label would multiply them
        self.probe_round_seconds.observe(seconds)
        for outcome, count in outcomes.items():
            self.probe_requests.labels(outcome).inc(count)


def _secret_since(record: Record) -> datetime | None:
    """Since when consumers hold their secret: a new one stored by this rotation, else the
    last completed rotation's, else an adopted secret's creation."""
    if record.pending_id is not None and record.stored_at is not None:
        return record.stored_at
    if record.history:
        return record.history[-1].stored_at or record.history[-1].finished_at
    return record.last_rotation_at


def _timestamp(when: datetime | None) -> float | None:
    return when.timestamp() if when is not None else None


class _ScrapeTime(Collector):
    """The values that move with time, computed at each scrape from the last records."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self._metrics
        now = metrics._clock()  # noqa: SLF001 - a part of Metrics, split out for the registry
        with metrics._lock:  # noqa: SLF001
            moments = dict(metrics._moments)  # noqa: SLF001
        age = GaugeMetricFamily(
            "rotator_secret_age_seconds",
            "Seconds since the secret consumers hold was stored",
            labels=["target"],
        )
        backoff = GaugeMetricFamily(
            "rotator_backoff_seconds",
            "Seconds until the next attempt after failures (0: none pending)",
            labels=["target"],
        )
        current = GaugeMetricFamily(
            "rotator_awaiting_rollout_current_seconds",
            "Seconds the rotation under way has awaited rollout (0: none)",
            labels=["target"],
        )
        for name, moment in sorted(moments.items()):
            if moment.secret_since is not None:
                age.add_metric([name], max(0.0, (now - moment.secret_since).total_seconds()))
            wait = (moment.retry_at - now).total_seconds() if moment.retry_at else 0.0
            backoff.add_metric([name], max(0.0, wait))
            since = moment.awaiting_since
            current.add_metric([name], max(0.0, (now - since).total_seconds()) if since else 0.0)
        return [age, backoff, current]
