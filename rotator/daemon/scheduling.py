"""The daemon's APScheduler, configured as ``PRODUCT.md`` asks, and quiet about skipped runs;
and the ``Timetable`` of each target's next wakeup, which the scheduled job serves.

A pass that outlives the reconcile interval (Vault slow, Intercom backing off) makes
APScheduler skip the next run (``max_instances=1``: passes never overlap) and log a warning in
its own words every time: 99 lines in 25 minutes in one report, saying nothing a counter would
not. Here a skipped run is counted (``rotator_scheduler_runs_skipped_total``) and logged in our
shape (``scheduler.run_skipped``) the first time, then at most once per ``SKIPPED_LOG_EVERY``
seconds with the number skipped since; APScheduler's own line is dropped.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler

from rotator.logs import get_logger

#: Seconds between two ``scheduler.run_skipped`` lines while runs keep being skipped.
SKIPPED_LOG_EVERY = 600.0
#: The logger our schedulers write to: under ``apscheduler`` (same level and handlers), but our
#: own, so that dropping the skipped-run warning touches no other scheduler in the process.
LOGGER = "apscheduler.scheduler.rotator"
#: Seconds a run may start late and still run (a process paused, a busy pool).
MISFIRE_GRACE = 30

log = get_logger()


class _DropSkipped(logging.Filter):
    """APScheduler's 'skipped: maximum number of running instances reached': counted instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


def _scheduler_logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, _DropSkipped) for f in logger.filters):
        logger.addFilter(_DropSkipped())
    return logger


class SkippedRuns:
    """Counts skipped runs (``count``) and logs them at most once per ``every`` seconds of
    ``clock`` (unix seconds: injected, so a test moves it)."""

    def __init__(
        self,
        count: Callable[[], None],
        clock: Callable[[], float],
        every: float = SKIPPED_LOG_EVERY,
    ) -> None:
        self._count = count
        self._clock = clock
        self._every = every
        self._lock = threading.Lock()
        self._since_line = 0
        self._total = 0
        self._logged_at: float | None = None

    def __call__(self, event: JobEvent) -> None:
        self._count()
        now = self._clock()
        with self._lock:
            self._total += 1
            self._since_line += 1
            # A clock stepped back (Vault's: NTP, a failover) would otherwise silence the line
            # for the step: an earlier time than the last line's is told at once.
            if self._logged_at is not None and 0 <= now - self._logged_at < self._every:
                return
            skipped, self._since_line, self._logged_at = self._since_line, 0, now
            total = self._total
        log.warning(
            "scheduler.run_skipped",
            job=event.job_id.partition(":")[0],  # "confirmed:<target>" -> its kind
            skipped=skipped,
            skipped_total=total,
            detail="the previous run of this job is still going; counted in "
            "rotator_scheduler_runs_skipped_total, logged at most every "
            f"{self._every:g} s",
        )


def make_scheduler(on_skipped: SkippedRuns) -> BackgroundScheduler:
    """A UTC scheduler whose jobs never overlap, coalesce a backlog into one run, and run late
    by at most ``MISFIRE_GRACE`` seconds; skipped runs go to ``on_skipped``."""
    scheduler = BackgroundScheduler(
        timezone=UTC,
        logger=_scheduler_logger(),
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE},
    )
    scheduler.add_listener(on_skipped, EVENT_JOB_MAX_INSTANCES)
    return scheduler


class Timetable:
    """Each target's next wakeup on Vault's clock (``rotator.core.wakeups``), soonest first.

    A heap with one live entry per target: a replaced entry stays in the heap and is skipped
    when it surfaces (the heap is rebuilt once stale entries outnumber live ones). Per target:
    one dict item and one heap tuple, a few hundred bytes; 10,000 targets take a few MB, where
    one APScheduler job per target would take several times that (``Job``, its trigger, its
    jobstore entry) and rescheduling a job costs a jobstore update under the scheduler's lock.
    A target whose pass is running is not handed out again until ``finish``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[datetime, int, str]] = []
        self._entries: dict[str, tuple[datetime, str, int]] = {}
        self._running: set[str] = set()
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def set(self, name: str, at: datetime | None, reason: str = "") -> None:
        """Wake ``name`` at ``at`` (``None``: not until told again)."""
        with self._lock:
            entry = self._entries.get(name)
            if at is None:
                self._entries.pop(name, None)
                return
            if entry is not None and entry[:2] == (at, reason):
                return
            self._seq += 1
            self._entries[name] = (at, reason, self._seq)
            heapq.heappush(self._heap, (at, self._seq, name))
            if len(self._heap) > 2 * len(self._entries) + 64:
                self._heap = [(a, s, n) for n, (a, _, s) in self._entries.items()]
                heapq.heapify(self._heap)

    def get(self, name: str) -> tuple[datetime, str] | None:
        """When ``name`` wakes next, and why."""
        with self._lock:
            entry = self._entries.get(name)
        return None if entry is None else entry[:2]

    def pop_due(self, now: datetime) -> list[tuple[str, str]]:
        """``(name, reason)`` of every target due at ``now`` and not running; now running."""
        due: list[tuple[str, str]] = []
        held: list[tuple[datetime, int, str]] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                item = heapq.heappop(self._heap)
                entry = self._entries.get(item[2])
                if entry is None or entry[2] != item[1]:
                    continue  # replaced since, or dropped
                if item[2] in self._running:
                    held.append(item)
                    continue
                del self._entries[item[2]]
                self._running.add(item[2])
                due.append((item[2], entry[1]))
            for item in held:
                heapq.heappush(self._heap, item)
        return due

    def shift(self, by: timedelta) -> None:
        """Move every wakeup by ``by`` (Vault's clock was stepped: ``rotator.daemon.watch``)."""
        with self._lock:
            self._entries = {n: (at + by, why, s) for n, (at, why, s) in self._entries.items()}
            self._heap = [(a, s, n) for n, (a, _, s) in self._entries.items()]
            heapq.heapify(self._heap)

    def finish(self, name: str) -> None:
        with self._lock:
            self._running.discard(name)
