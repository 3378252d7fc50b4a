"""Which targets the daemon passes over, and when: a quiet daemon reads a target from Vault only
when something can happen to it.

Theory of operation
-------------------
The daemon's scheduled job runs every ``reconcile_interval`` (``Watch.tick``), and each run
costs Vault nothing unless something is due:

* **wakeups**: every record a pass reads or writes, in this process, is told to the ``Watch``
  (a ``RecordListener``), which works out when that target can next change
  (``rotator.core.wakeups.next_wakeup``: its schedule, a grace deadline, a backoff, a window
  opening, a lease to take over, a probe round) and puts it in the ``Timetable``. A tick passes
  over the targets whose time has come, ``daemon.concurrency`` at a time; a target whose pass
  failed is tried again after ``reconcile_interval``.
* **the sweep**, every ``sweep_interval``: one read of the change log
  (``rotator.reconciler.changes``) names the targets other processes wrote since (a
  ``rotate-now``, a ``pause``, an ``abort``, another replica's confirmation, a CronJob's pass),
  and only those are read. When it cannot say which (too many, the log gone), and every
  ``RESYNC_EVERY`` in any case, every target is read: that catches what the log cannot tell
  (a hand edit of a record, a rotator too old to write the log, a note that failed).
* **the token**: each tick renews it once a third of its TTL is left
  (``rotator.vault.Vault.keep_token``), so a daemon that asks Vault nothing for an hour does
  not find its token expired.
* **hook calls** act at once, outside the tick (``rotator.daemon.service``).

Every request to Vault is counted by why it was made (``rotator.vault.reasons``): the tick runs
each pass under its wakeup's reason. An idle target then costs its share of six change-log reads
an hour (the default sweep), of the token's renewals, and one read per ``RESYNC_EVERY``. A
daemon of one target reads its record at each sweep instead of the log: the same one request.

Time is the reconciler's clock (Vault's, or a test's): a test moves it and calls ``tick``.
When Vault's clock steps back (NTP, a failover to a node behind), what is counted in elapsed
time (the next sweep and full read, retries, a lease's ttl) is moved back with it, measured
on our monotonic clock, so that the step delays none of it (``_follow_step_back``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from rotator.config import Settings, TargetSettings
from rotator.config.windows import window_state
from rotator.core.record import Record
from rotator.core.wakeups import next_wakeup
from rotator.daemon.scheduling import Timetable
from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.reconciler import Reconciler
from rotator.reconciler.changes import ChangeLog
from rotator.reconciler.passes import TargetReport, next_rotation_at
from rotator.vault.clock import ClockUnknown
from rotator.vault.reasons import because

log = get_logger()

#: How often every target is read whatever the change log says: what it cannot tell (a hand
#: edit, a rotator too old to write it) is seen within this. Four reads per target a day.
RESYNC_EVERY = timedelta(hours=6)
#: A step back of Vault's clock up to this is the estimate's own wobble (``rotator.vault.clock``:
#: a round trip plus a second), not a step: nothing is moved for it.
STEP_BACK = timedelta(seconds=5)


class Watch:
    """The daemon's timetable of targets, its sweep, and the tick that serves both."""

    def __init__(
        self,
        settings: Settings,
        reconciler: Reconciler,
        changes: ChangeLog,
        *,
        stopping: threading.Event,
        keep_token: Callable[[], None] = lambda: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.reconciler = reconciler
        self.changes = changes
        self.timetable = Timetable()
        self._stopping = stopping
        self._keep_token = keep_token
        self._clock = reconciler.clock
        self._monotonic = monotonic
        self._poll = timedelta(seconds=settings.daemon.reconcile_interval)
        self._sweep_every = timedelta(seconds=settings.daemon.sweep_interval)
        #: Vault's time of the next sweep, and of the next read of every record (None: at the
        #: next tick: the daemon's first one reads everything).
        self._next_sweep: datetime | None = None
        self._next_resync: datetime | None = None
        #: Vault's time and our monotonic time at the last tick: a tick that finds Vault's time
        #: behind the elapsed time saw Vault's clock stepped back.
        self._last_tick: tuple[datetime, float] | None = None
        #: Targets a listener heard of since their pass began (the others get a retry).
        self._heard: set[str] = set()
        self._lock = threading.Lock()

    # --- what passes saw (RecordListener) ------------------------------------------------------

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        del before, reason
        self._plan(target, after)

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        if error is not None:
            self._retry(target.name)
        else:
            self._plan(target, record)

    def _plan(self, target: TargetSettings, record: Record | None) -> None:
        now = self._clock()
        wakeup = next_wakeup(
            record,
            self.reconciler.policy(target),
            now,
            due_at=next_rotation_at(target, record) if record is not None else None,
            window=window_state(target.windows, now),
            poll=self._poll,
        )
        with self._lock:
            self._heard.add(target.name)
        self.timetable.set(target.name, *((wakeup.at, wakeup.reason) if wakeup else (None,)))

    def _retry(self, name: str) -> None:
        with self._lock:
            self._heard.add(name)
        self.timetable.set(name, self._clock() + self._poll, "retry")

    # --- asking for passes -----------------------------------------------------------------------

    def wake(
        self,
        names: Sequence[str] | None = None,
        reason: str = "asked",
        *,
        at: datetime | None = None,
    ) -> None:
        """Pass over ``names`` (every target by default) at the next tick (a sweep: at ``at``,
        the time its tick hands out what is due: a clock read again is later, not due yet)."""
        now = self._clock() if at is None else at
        for name in names if names is not None else self._names():
            self.timetable.set(name, now, reason)

    def _names(self) -> list[str]:
        return [t.name for t in self.settings.targets]

    # --- the tick ------------------------------------------------------------------------------

    def tick(self) -> list[TargetReport]:
        """Renew the token if it is time, sweep if it is time, then pass over every target
        whose wakeup has come (``daemon.concurrency`` at a time); their reports."""
        if self._stopping.is_set():
            return []
        try:
            self._keep_token()
        except RotatorError as e:  # the passes below fail and report it properly
            log.warning("daemon.token_upkeep_failed", error=str(e))
        try:
            now = self._clock()
        except ClockUnknown as e:
            # No answer from Vault yet (it is unreachable): every time here is Vault's, and a
            # guess would set wakeups and sweeps on this host's clock. The next job asks again.
            log.warning("daemon.vault_time_unknown", error=str(e), detail="tried again next job")
            return []
        self._follow_step_back(now)
        # The full read is due on its own clock: a sweep_interval longer than RESYNC_EVERY
        # (up to 24 h) must not make it as rare as the sweep.
        times = (self._next_sweep, self._next_resync)
        if any(at is None or now >= at for at in times):
            self._sweep(now)
        due = self.timetable.pop_due(now)
        if not due:
            return []
        workers = min(self.settings.daemon.concurrency, len(due))
        if workers <= 1:
            return [self._run(name, reason) for name, reason in due]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile") as pool:
            return list(pool.map(lambda item: self._run(*item), due))

    def _follow_step_back(self, now: datetime) -> None:
        """Vault's clock stepped back (NTP, a failover to a node behind) would push what is
        counted in elapsed time (the next sweep and full read, a retry, a lease's ttl, a probe
        round) later by the whole step: everything is pulled in by it. A wakeup at a time the
        record names (a due date, a deadline) then comes early: its pass finds nothing to do
        yet and plans again on the new clock, one read. Forward needs nothing: what is due
        runs. The step is measured on our monotonic clock, which no NTP moves."""
        mono = self._monotonic()
        last, self._last_tick = self._last_tick, (now, mono)
        if last is None:
            return
        back = last[0] + timedelta(seconds=mono - last[1]) - now
        if back <= STEP_BACK:
            return
        log.warning(
            "daemon.vault_clock_stepped_back",
            seconds=round(back.total_seconds()),
            detail="sweeps, full reads and wakeups are moved back with it",
        )
        if self._next_sweep is not None:
            self._next_sweep -= back
        if self._next_resync is not None:
            self._next_resync -= back
        self.timetable.shift(-back)

    def _sweep(self, now: datetime) -> None:
        """What other processes wrote since the last sweep: read those targets (or all)."""
        self._next_sweep = now + self._sweep_every
        if len(self.settings.targets) == 1:
            # One record costs what the log costs, and tells hand edits too: read it instead.
            first, self._next_resync = self._next_resync is None, now + RESYNC_EVERY
            self.wake(reason="start" if first else "sweep", at=now)
            return
        changed: set[str] | None
        with because("sweep"):
            try:
                changed = self.changes.changes()
            except RotatorError as e:
                log.warning("daemon.sweep_failed", error=str(e), detail="read again next sweep")
                changed = set()
        if self._next_resync is None or now >= self._next_resync:
            first = self._next_resync is None
            self._next_resync = now + RESYNC_EVERY
            self.wake(reason="start" if first else "resync", at=now)
            return
        if changed is None:
            log.info("daemon.sweep_reads_all", detail="the change log cannot say which changed")
            self.wake(reason="sweep", at=now)
            return
        known = set(self._names())
        if changed:
            log.debug("daemon.sweep", changed=sorted(changed & known))
        self.wake(sorted(changed & known), reason="sweep", at=now)

    def _run(self, name: str, reason: str) -> TargetReport:
        with self._lock:
            self._heard.discard(name)
        try:
            with because(reason):
                report = self.reconciler.reconcile_all(stop=self._stopping, names=[name])[0]
        finally:
            self.timetable.finish(name)
        with self._lock:
            heard = name in self._heard
        if report.error is not None or not heard:
            self._retry(name)  # a crash, or stopped before reading: not forgotten
        return report
