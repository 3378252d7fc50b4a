"""A quiet daemon at the end of every simulated run: liveness of ``next_wakeup`` (issue 15).

The daemon reads a target only when ``rotator.core.wakeups.next_wakeup`` says something can
happen to it. If it answers ``None``, or a time too late, for a record a pass *would* change
earlier, the target stalls and nobody notices. Here the real ``rotator.daemon.watch.Watch``
drives one simulated process (its reconciler, its Vault clock, its timetable) at the end of a
run, once the faults stop, from whatever state the run left: leases of crashed processes,
backoffs, half-done steps, blocks, requests, rollouts waiting for probes or hooks.

Time moves only to the daemon's next wakeup, and the daemon's job runs there: it is never
woken by anything else, except a sweep when an operator wrote (a ``rotate-now`` on a blocked
target), and hook calls, which act at once, as in the product. The daemon's own sweep of one
target is a read of its record every ``sweep_interval``: it would hide a wakeup too late by up
to one sweep, so the check below judges the wakeup itself, before any sweep can run.

Liveness, judged by another process's plain pass (a polling daemon's, which reads the record
and acts on what it finds): while the quiet daemon sleeps until its wakeup ``at`` (``None``:
two days, past every lease, grace, backoff and probe round), a plain pass now and at the last
moment before ``at`` changes nothing in the record. Wakeups within ``poll`` are not judged:
they mean "again after ``poll``" (something could happen now; a pass never repeats in a loop),
and the real daemon's job runs every ``poll`` anyway; nor are probe rounds, paced at
``probe_spacing`` by design. At the end the target must settle as the polling settle requires (idle, no stray
secret), asleep until its schedule, and an emergency owed (I9) must be served within the two
hours the polling settle gives.

Rotation windows (``simulation/windows.py``): a due start or a retirement a closed window holds
waits for the next opening, at most the plan's longest closed stretch (13 h for the windows a
plan draws): one ``window`` wakeup, judged as every other sleep (a plain pass now, halfway into
the first window that opens before it, and just before it, changes nothing: a sleep past a
whole window ends when it is closed again). Emergencies ignore windows, so I9's two hours stand. While the
plan's windows are closed (as the harness reads them, not rotator), a "due" wakeup within
``poll`` whose pass then changes nothing is the daemon polling a start a window holds: it fails
too (the daemon must sleep until the opening), as does a "due" wakeup within
``poll`` taken for "asleep until its schedule".
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import datetime

from simulation import fleet
from simulation.actors import Commands, Process
from simulation.stats import COUNTS
from simulation.windows import DURATIONS, is_open, longest_closed, next_opening
from simulation.world import STATE, World

from rotator.core.record import Phase, Record
from rotator.daemon.watch import Watch
from rotator.reconciler.changes import ChangeLog

#: What ``None`` is judged against: past every lease, grace period, backoff and probe round.
ASLEEP = 2 * 86400.0
#: Wakeups the daemon may take to settle (a rotation with probe rounds takes a few dozen).
WAKEUPS = 150
#: Operator resumes of a blocked target, as the polling settle allows.
RESUMES = 5
#: I9: an emergency owed is served within this of the faults stopping.
SERVED_WITHIN = 7200.0

Run = Callable[[Process, Callable[[], object], str], None]


class QuietDaemon:
    """Process ``daemon`` running the real ``Watch``; ``checker`` passes as a polling daemon
    would, to judge it; ``operator`` types ``rotate-now``."""

    def __init__(
        self,
        world: World,
        run: Run,
        processes: tuple[Process, Process, Process],
        hooks: tuple[str, ...],
    ) -> None:
        self.world, self.run, self.hooks = world, run, hooks
        self.daemon, self.checker, self.operator = processes
        self.daemon.boot()
        reconciler = self.daemon.reconciler
        assert reconciler is not None
        changes = ChangeLog(self.daemon.kv, reconciler.settings.vault.state_path)
        self.watch = Watch(reconciler.settings, reconciler, changes, stopping=threading.Event())
        reconciler.listeners.append(self.watch)
        self.started = world.now

    # --- time, as the daemon sees it -----------------------------------------------------------

    def _world_time(self, at: datetime) -> float:
        """``at`` on the daemon's clock (Vault's, as its answers told it) as world time."""
        reconciler = self.daemon.reconciler
        assert reconciler is not None
        return at.timestamp() + (self.world.now - reconciler.clock().timestamp())

    def _pass_time(self, until: float) -> None:
        if until > self.world.now:
            seconds = until - self.world.now
            self.world.tick(seconds)
            fleet.poll(self.world, seconds)

    def tick(self) -> None:
        """The daemon's scheduled job runs (``Watch.tick``: its sweep if due, its wakeups)."""
        self.run(self.daemon, self.watch.tick, "tick")
        COUNTS["quiet ticks"] += 1

    # --- the settle --------------------------------------------------------------------------

    def settle(self, strays: Callable[[Record], list[str]], served: Callable[[], None]) -> None:
        """Wake the daemon only at its wakeups until the target rests; judge every sleep."""
        # The daemon's start-up talks to Vault (its token, its mount) before its first job:
        # from then on it knows Vault's time, which its timetable is on.
        self.run(self.daemon, lambda: self.daemon.kv.require_cas(STATE), "start")
        self.tick()  # the first job: every target read once
        resumes = 0
        owed = True
        polled: tuple[int, str] | None = None  # a poll of what a closed window holds
        rounds = self._rounds_while_closed()
        wakeups = 0
        while wakeups < WAKEUPS:
            self._quiet_while_closed(polled)
            self._hooks_confirm()
            record = self.world.state_record()
            assert record is not None
            if record.phase is Phase.BLOCKED and resumes < RESUMES:
                resumes += 1  # the operator fixed the cause; the daemon's sweep sees it
                polled = None
                rotate = functools.partial(Commands(self.operator).rotate_now, emergency=False)
                self.run(self.operator, rotate, "rotate-now")
                sweep = self.watch.settings.daemon.sweep_interval
                self._pass_time(self.world.now + sweep)
                self.tick()
                continue
            wakeup = self.watch.timetable.get("web")
            at = self.world.now + ASLEEP if wakeup is None else self._world_time(wakeup[0])
            why = None if wakeup is None else wakeup[1]
            soon = at <= self.world.now + self.watch.settings.daemon.reconcile_interval + 1.0
            polled = self._polls_closed(soon, why)
            if self._promises(at, why):
                self._judge(at, why)
            if why == "window":
                COUNTS[f"window waits ({record.phase.value})"] += 1
            until_due = why == "due" and not soon  # asleep until its schedule, not due now
            settled = record.phase is Phase.IDLE and until_due and not strays(record)
            if owed and (settled or at - self.started > SERVED_WITHIN):
                owed = False
                served()  # I9: the daemon rests, or sleeps past two hours, with nothing owed
            if settled:
                return
            if why == "probe" and rounds > 0 and not is_open(self.daemon.plan.windows, at):
                rounds -= 1  # a probe round while a window holds the rollout: its own budget
            else:
                wakeups += 1
            self._pass_time(at + 2.0)  # past the daemon's estimate of Vault's time
            self.tick()
        raise AssertionError(
            f"liveness: the quiet daemon did not settle in {WAKEUPS} wakeups: "
            f"{self.world.state_record()!r}, next wakeup {self.watch.timetable.get('web')}"
        )

    def _rounds_while_closed(self) -> int:
        """Probe rounds a probed rollout takes while its retirement waits for a window: one
        every ``max(poll, probe_spacing)`` across the plan's longest closed stretch, twice
        (a rotation may wait for a start and a retirement), beside ``WAKEUPS``."""
        settings = self.watch.settings
        closed = longest_closed(self.daemon.plan.windows, self.world.now)
        pace = max(settings.daemon.reconcile_interval, settings.probes.spacing)
        return 2 * int(closed / pace + 1.0) if closed else 0

    def _polls_closed(self, soon: bool, why: str | None) -> tuple[int, str] | None:
        """A wakeup within ``poll`` to start a rotation ("due") while the plan's windows are
        closed: the record's version and the reason, for ``_quiet_while_closed`` after the
        tick. (Not "poll": a rollout waiting for a list to show its new secret is polled
        until its grace deadline, windows or not: a pass changes nothing meanwhile.)"""
        windows = self.daemon.plan.windows
        if not soon or why != "due" or is_open(windows, self.world.now):
            return None
        return self.world.latest(STATE)[1], why

    def _quiet_while_closed(self, polled: tuple[int, str] | None) -> None:
        """The tick that followed a wakeup within ``poll`` while the windows were closed, and
        still are, must have acted: a pass that changed nothing was a poll of what a window
        holds (issue 15: the daemon sleeps until the opening, ``rotator.core.wakeups``)."""
        if polled is None or is_open(self.daemon.plan.windows, self.world.now):
            return
        version, why = polled
        if self.world.latest(STATE)[1] == version:
            raise AssertionError(
                f"quiet: the daemon woke within poll ({why}) while every window is closed, "
                f"and its pass changed nothing: {self.world.state_record()!r}"
            )

    def _promises(self, at: float, why: str | None) -> bool:
        """Whether sleeping until ``at`` says nothing changes before it: no wakeup, or one more
        than ``poll`` away. What can happen now is looked at again after ``poll`` (a step a pass
        left, a rotation due once the one it finished is complete, the watch's retry of a
        failed pass); probe rounds are paced at ``probe_spacing`` by design."""
        poll = self.watch.settings.daemon.reconcile_interval
        return why is None or (why != "probe" and at > self.world.now + poll + 1.0)

    def _judge(self, at: float, why: str | None) -> None:
        """A plain pass of another process, now, inside the first window that opens before
        ``at`` (if the plan names windows) and just before ``at``, changes nothing."""
        self.checker.boot()  # a process that has seen no lease yet: it waits out a whole ttl
        _, version = self.world.latest(STATE)
        before = self.world.state_record()
        for when in (self.world.now, self._inside_window(at), at - 2.0):
            if when is None or when < self.world.now:
                continue
            self._pass_time(when)
            self.run(self.checker, Commands(self.checker).daemon_pass, "pass")
            COUNTS["liveness checks"] += 1
            if self.world.latest(STATE)[1] != version:
                waits = "no wakeup" if why is None else f"its {why} wakeup"
                raise AssertionError(
                    f"liveness: the quiet daemon sleeps {at - self.world.now:.0f} s more "
                    f"({waits}), yet a plain pass changed the record: {before!r} -> "
                    f"{self.world.state_record()!r}"
                )

    def _inside_window(self, at: float) -> float | None:
        """Halfway into the plan's shortest window, in its first opening before ``at``: a sleep
        past a whole window (a daily one skipped by a day) ends just before the next opening,
        when the window is closed again, so only a pass inside the window shows what it skips."""
        windows = self.daemon.plan.windows
        opens = next_opening(windows, self.world.now)
        if opens is None:
            return None
        inside = opens + min(DURATIONS[duration] for _, duration, _ in windows) / 2
        return inside if inside < at - 2.0 else None

    def _hooks_confirm(self) -> None:
        """Each hook consumer confirms the secret awaiting rollout through the daemon's hook
        (a confirmation it accepts runs a pass at once, as the daemon's hook does)."""
        record = self.world.state_record()
        if record is None or record.phase is not Phase.AWAITING_ROLLOUT or not record.pending_id:
            return
        confirm, pending = Commands(self.daemon).confirm_hook, record.pending_id
        for name in self.hooks:
            self.run(self.daemon, lambda n=name: confirm(pending, n), "confirm-hook")
