"""The daemon's APScheduler, configured as ``PRODUCT.md`` asks, and quiet about skipped runs.

A pass that outlives the reconcile interval (Vault slow, Intercom backing off) makes
APScheduler skip the next run (``max_instances=1``: passes never overlap) and log a warning in
its own words every time: 99 lines in 25 minutes in one report, saying nothing a counter would
not. Here a skipped run is counted (``rotator_scheduler_runs_skipped_total``) and logged in our
shape (``scheduler.run_skipped``) the first time, then at most once per ``SKIPPED_LOG_EVERY``
seconds with the number skipped since; APScheduler's own line is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC

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
            if self._logged_at is not None and now - self._logged_at < self._every:
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
