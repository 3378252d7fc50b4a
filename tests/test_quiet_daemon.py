"""A quiet daemon: it reads a target from Vault only when something can happen to it, plus a slow
sweep for what other processes wrote (issue 15, "quiet when idle").

Real OpenBao and the emulator; the clock is injected: the test moves the world's clock (Vault's
time for the reconciler) and the Vault adapter's monotonic clock (the token's TTL), then runs
the daemon's scheduled job (``Daemon.run_once``) as the scheduler would. Every request the Vault
adapter sends is counted through its observe hook, with the reason the daemon gave it.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from _openbao import free_port
from structlog.testing import capture_logs
from test_pause import _cli
from test_rotation import HOOK_TOKEN, World, _wait
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.config import Settings
from rotator.core.observation import RotateNow
from rotator.core.record import Phase
from rotator.daemon import Daemon
from rotator.daemon.metrics import Metrics
from rotator.intercom import IntercomClient, RetryPolicy
from rotator.reconciler import Reconciler
from rotator.reconciler.changes import ChangeLog
from rotator.vault import Vault
from rotator.vault.reasons import reason_of

HOUR = timedelta(hours=1)


def _client(target: Any, token: Any) -> IntercomClient:
    return IntercomClient(
        token, base_url=target.base_url, retry=RetryPolicy(attempts=2), sleep=lambda _s: None
    )


@dataclass
class Quiet:
    """A daemon on the world, not started: ``tick`` moves both clocks and runs its job."""

    world: World
    settings: Settings
    daemon: Daemon
    metrics: Metrics
    #: (operation, reason, Vault time) of every request the daemon's Vault adapter sent.
    requests: list[tuple[str, str, datetime]] = field(default_factory=list)
    mono: list[float] = field(default_factory=lambda: [10_000.0])

    def tick(self, **delta: float) -> list[tuple[str, str, datetime]]:
        """Move time on by ``delta``, run the scheduled job; the requests it sent."""
        step = timedelta(**delta)
        self.world.clock.now += step
        self.mono[0] += step.total_seconds()
        before = len(self.requests)
        self.daemon.run_once()
        return self.requests[before:]

    def until(self, at: datetime) -> tuple[set[str], set[str]]:
        """Jump to a second before ``at`` and run the job, then at ``at``: the reasons of the
        requests sent each time."""
        gap = at - self.world.clock.now - timedelta(seconds=1)
        early = self.tick(seconds=gap.total_seconds())
        return self.reasons(early), self.reasons(self.tick(seconds=1))

    def reasons(self, sent: list[tuple[str, str, datetime]]) -> set[str]:
        return {reason for _, reason, _ in sent}

    def by_reason(self, reason: str) -> float:
        sample = self.metrics.registry.get_sample_value(
            "rotator_vault_requests_by_reason_total", {"reason": reason}
        )
        return sample or 0.0

    def wakeup(self, name: str = "web") -> tuple[datetime, str] | None:
        return self.daemon.watch.timetable.get(name)


def targets(world: World, count: int) -> Settings:
    """The world's settings with ``count`` targets: ``web``, then ``web-2``..."""
    first = world.target
    more = [
        first.model_copy(
            update={"name": f"web-{i}", "vault_path": f"{first.vault_path}-{i}", "windows": ()}
        )
        for i in range(2, count + 1)
    ]
    return world.settings.model_copy(update={"targets": (first, *more)})


def quiet(
    world: World,
    *,
    count: int = 1,
    token: str | None = None,
    after_request: Callable[[str, str, str], None] | None = None,
    running: bool = False,
    **daemon: float,
) -> Quiet:
    """Settings with ``count`` targets and these ``[daemon]`` values (defaults otherwise), the
    targets provisioned by another process, and a quiet daemon with its own counted Vault (its
    monotonic clock moved by ``tick``; ``after_request`` hears (operation, reason, status) of
    each request it sent). ``running``: the daemon's clock moves on by a microsecond each time
    it is read, as a real one does (the world's stands still between ticks)."""
    settings = targets(world, count)
    values = {"reconcile_interval": 60.0, "sweep_interval": 600.0, **daemon}
    settings = settings.model_copy(update={"daemon": settings.daemon.model_copy(update=values)})
    world.settings = settings
    provision = world.reconciler(client_factory=_client)
    assert all(r.phase == "idle" for r in provision.reconcile_all())
    metrics = Metrics(clock=world.clock)
    environ = {**world.environ, "VAULT_TOKEN": token} if token else world.environ
    box = Quiet(world, settings, None, metrics)  # type: ignore[arg-type]

    def observe(operation: str, status: str, seconds: float) -> None:
        box.requests.append((operation, reason_of(operation), world.clock()))
        metrics.vault_request(operation, status, seconds)
        if after_request is not None:
            after_request(operation, reason_of(operation), status)

    vault = Vault(settings.vault, environ=environ, observe=observe, monotonic=lambda: box.mono[0])
    reads = itertools.count(1)

    def clock() -> datetime:
        return world.clock() + timedelta(microseconds=next(reads) if running else 0)

    reconciler = Reconciler(
        settings,
        vault,
        environ=environ,
        clock=clock,
        client_factory=_client,
        listeners=[metrics],
        monotonic=lambda: box.mono[0],
    )
    world.reconcilers.append(reconciler)
    box.daemon = Daemon(
        settings,
        reconciler,
        vault,
        environ=environ,
        metrics=metrics,
        clock=lambda: clock().timestamp(),
        monotonic=lambda: box.mono[0],
    )
    box.daemon.run_once()  # the start: every target read once
    return box


def other_process(world: World) -> Reconciler:
    """Another rotator process (a CLI, a replica), noting its writes as the CLI wires it."""
    reconciler = world.reconciler(client_factory=_client)
    reconciler.listeners.append(ChangeLog(reconciler.vault, world.settings.vault.state_path))
    return reconciler


def test_an_idle_target_is_not_read_between_sweeps(world):
    """Over a simulated hour an idle target costs one request per sweep (six at the default
    ten minutes) and nothing in between, though the job runs every minute."""
    q = quiet(world)
    per_minute = [q.tick(minutes=1) for _ in range(60)]
    busy = [minute for minute, sent in enumerate(per_minute, start=1) if sent]
    assert busy == [10, 20, 30, 40, 50, 60]
    assert all(len(per_minute[m - 1]) == 1 for m in busy)
    assert q.reasons([r for sent in per_minute for r in sent]) == {"sweep"}
    assert q.by_reason("sweep") == 6


def test_a_due_schedule_and_a_grace_deadline_each_read_the_target_at_their_time(world):
    """The schedule's due time starts the rotation at that tick, not a minute before; the grace
    deadline then retires the old secret at its tick; the metric names both reasons."""
    q = quiet(world, sweep_interval=86400.0)
    old = world.record().current_id
    due, why = q.wakeup()
    assert (due, why) == (world.record().last_rotation_at + timedelta(days=30), "due")
    early = q.tick(seconds=(due - world.clock() - timedelta(minutes=1)).total_seconds())
    assert "due" not in q.reasons(early)
    assert q.reasons(q.tick(minutes=1)) >= {"due"}
    record = world.record()
    assert record.phase is Phase.AWAITING_ROLLOUT
    assert q.wakeup() == (record.deadline, "deadline")
    early, on_time = q.until(record.deadline)
    assert early <= {"sweep", "resync"}, "read for its deadline before the deadline"
    assert "deadline" in on_time
    assert world.record().phase is Phase.IDLE
    assert old not in world.live()
    assert q.by_reason("due") > 0
    assert q.by_reason("deadline") > 0


def test_a_retry_time_reads_the_target_when_its_backoff_ends(world):
    """A rotation that failed at Intercom is passed again at its retry time, not before."""
    q = quiet(world, sweep_interval=86400.0)
    due, _ = q.wakeup()
    world.emulator.set_faults("5xx=1")
    try:
        q.until(due)
    finally:
        world.emulator.set_faults("")
    record = world.record()
    assert record.attempts == 1
    assert record.retry_at is not None
    assert q.wakeup() == (record.retry_at, "retry")
    early, on_time = q.until(record.retry_at)
    assert early <= {"sweep"}
    assert "retry" in on_time
    assert world.record().phase is Phase.AWAITING_ROLLOUT


@pytest.mark.target(windows=[{"cron": "0 9 * * *", "duration": "1h"}])
def test_a_due_rotation_outside_its_window_is_read_again_when_the_window_opens(world):
    """Due at noon with a 09:00-10:00 window: the due tick rests it, and the next read is at
    the next opening, where the rotation starts."""
    q = quiet(world, sweep_interval=86400.0)
    due, _ = q.wakeup()
    q.until(due)
    assert world.record().phase is Phase.IDLE
    opens = (due + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    assert q.wakeup() == (opens, "window")
    early, on_time = q.until(opens)
    assert early <= {"sweep"}
    assert "window" in on_time
    assert world.record().phase is Phase.AWAITING_ROLLOUT


def test_a_hook_confirmation_retires_at_once(world):
    """With the daemon running and its clock still, a confirmation through its hook retires
    the old secret at once, counted under the hook's reason."""
    q = quiet(world)
    other_process(world).reconcile_target("web", RotateNow())
    record = world.record()
    q.daemon.start()
    try:
        answer = httpx.post(
            f"{q.daemon.server.url}/v1/targets/web/confirm",
            json={"secret_id": record.pending_id},
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        _wait(lambda: world.record().phase is Phase.IDLE)
    finally:
        q.daemon.stop()
    assert record.current_id not in world.live()
    assert q.by_reason("hook") > 0


def test_other_processes_writes_are_acted_on_within_one_sweep(world, tmp_path):
    """Another process's rotate-now, a CLI pause and another replica's confirmation are each
    read at the next sweep, and only the target written is read (one log read, one record)."""
    q = quiet(world, count=3)
    other = other_process(world)
    other.reconcile_target("web-2", RotateNow())
    assert q.wakeup("web-2")[1] == "due"  # as the daemon last saw it: resting
    quiet_minutes = [q.tick(minutes=1) for _ in range(9)]
    assert not any(quiet_minutes)
    sent = q.tick(minutes=1)
    assert q.reasons(sent) == {"sweep"}
    record = world.reconciler().record("web-2")[0]
    assert q.wakeup("web-2") == (record.deadline, "deadline")
    assert q.wakeup("web")[1] == "due"  # not read: nothing was written for it

    paused = _cli(world, tmp_path, "pause", "web", "--reason", "freeze", "--actor", "alice")
    assert paused.returncode == 0, paused.stderr
    other.confirm("web-2", secret_id=record.pending_id, rotation_id=None, via="replica")
    for _ in range(10):
        sent = q.tick(minutes=1)
    assert q.reasons(sent) == {"sweep"}
    assert q.wakeup("web") is None  # paused: nothing until resumed
    assert world.reconciler().record("web-2")[0].phase is Phase.IDLE
    assert record.current_id not in world.live()
    assert q.by_reason("sweep") == len([r for r in q.requests if r[1] == "sweep"])


@pytest.mark.parametrize(
    ("count", "daemon", "ttl"),
    [(1, {"sweep_interval": 3600.0}, "2h"), (50, {}, "1h")],
    ids=["1-target-hourly-sweep", "50-targets-defaults"],
)
def test_an_idle_target_costs_at_most_two_requests_an_hour_token_included(
    world, count, daemon, ttl
):
    """Over a simulated day with a renewable token, every request the daemon sends (sweeps,
    full reads, token renewals) averages at most 2 per target per hour; the token is renewed,
    never lets a request fail, and is not replaced by a new login."""
    token = world.openbao.create_token(["root"], ttl=ttl, renewable=True)
    q = quiet(world, count=count, token=token, **daemon)
    start = len(q.requests)
    for _ in range(24 * 60):
        q.tick(minutes=1)
    day = q.requests[start:]
    assert len(day) / count / 24 <= 2
    operations = [op for op, _, _ in day]
    assert "renew" in operations
    assert "login" not in operations
    assert all(r.ok for r in q.daemon.reconciler.reconcile_all(names=["web"]))


def test_the_change_log_names_only_other_processes_targets(world):
    """A process's own notes are not news to it; another's name their target; more than the
    log can tell say 'everything' (None)."""
    path = f"rotator-test/{uuid.uuid4().hex}/state"
    vault = world.reconciler().vault
    mine, theirs = ChangeLog(vault, path), ChangeLog(vault, path)
    assert mine.changes() is None  # the first look only takes the log's version
    mine.note("a")
    assert mine.changes() == set()
    theirs.note("b")
    mine.note("c")
    theirs.note("d")
    assert mine.changes() == {"b", "d"}
    for i in range(12):
        theirs.note(f"t{i}")
    assert mine.changes() is None
    assert mine.changes() == set()


def test_a_processs_first_note_reads_the_log_once_then_each_note_is_one_write(world):
    """A one-shot process (a CLI) does not know the log's version: it reads it once (one
    request) rather than sending a write bound to fail first (two); each later note is one
    write, and a write that meets another's version still lands after one re-read."""
    path = f"rotator-test/{uuid.uuid4().hex}/state"
    sent: list[str] = []
    vault = Vault(
        world.settings.vault,
        environ=world.environ,
        observe=lambda operation, *_: sent.append(operation),
    )
    vault.read(f"{path}/warm-up")  # the adapter's own first requests (login, the mount)
    other = ChangeLog(world.reconciler().vault, path)
    other.note("a")
    sent.clear()
    log = ChangeLog(vault, path)
    log.note("b")
    assert sent == ["read", "write"]
    log.note("c")
    assert sent == ["read", "write", "write"]
    other.note("d")  # another process moves the log on
    sent.clear()
    log.note("e")
    assert sent == ["write", "read", "write"]
    reader = ChangeLog(world.reconciler().vault, path)
    assert reader.changes() is None  # a first look: it cannot say what changed before it
    assert reader.changes() == set()
    assert vault.read(f"{path}/_changes").data == {"target": "e", "by": "rotator"}


def test_a_daemons_start_reads_each_record_once_and_shows_it(world):
    """The start pass reads every target once, in the daemon's first job on a clock that moves
    on as a real one does, and /metrics shows each from that read: no separate read per
    target beforehand to seed the metrics (10,000 reads at 10,000 targets)."""
    q = quiet(world, count=3, running=True)
    reads = [op for op, reason, _ in q.requests if reason == "start" and op == "read"]
    assert len(reads) == 3
    for name in ("web", "web-2", "web-3"):
        phase = q.metrics.registry.get_sample_value(
            "rotator_target_phase", {"target": name, "phase": "idle"}
        )
        assert phase == 1.0


def test_a_sweep_passes_over_what_it_found_in_the_same_job_on_a_running_clock(world):
    """On a clock that moves on between two readings (a real one), the targets a sweep finds
    written are passed over in that same job, not one ``reconcile_interval`` later."""
    q = quiet(world, count=3, running=True)
    other_process(world).reconcile_target("web-2", RotateNow())
    for _ in range(9):
        q.tick(minutes=1)
    sent = q.tick(minutes=1)
    assert [op for op, _, _ in sent].count("read") >= 2  # the log, then web-2's record
    record = world.reconciler().record("web-2")[0]
    assert q.wakeup("web-2") == (record.deadline, "deadline")


def test_a_first_job_before_vault_answers_waits_for_the_next_one(world):
    """Vault unreachable at the daemon's first job: nobody has told Vault's time yet, so the
    job says so and does nothing (no wakeup set on a guessed clock, no traceback out of the
    job); the next job asks again (test_the_daemon_process_serves_metrics: a first job that
    can reach Vault passes over every target)."""
    vault_settings = world.settings.vault.model_copy(
        update={"address": f"http://127.0.0.1:{free_port()}", "timeout": 1.0}
    )
    settings = world.settings.model_copy(update={"vault": vault_settings})
    vault = Vault(settings.vault, environ=world.environ)
    reconciler = Reconciler(settings, vault, environ=world.environ, client_factory=_client)
    daemon = Daemon(settings, reconciler, vault, environ=world.environ)
    with capture_logs() as logs:
        daemon.run_once()
    assert "daemon.vault_time_unknown" in [e["event"] for e in logs]
    assert daemon.watch.timetable.get("web") is None  # nothing woken on a guessed time
