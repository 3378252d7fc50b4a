"""The quiet daemon with several targets, attacked (issue 15, item 2): Vault's clock stepped
back, a sweep that fails half-way or at the start, other processes' writes and crashes.

Real OpenBao and the emulator, the clock injected as in ``test_quiet_daemon``: the test moves
the world's clock (Vault's time) and the daemon's monotonic clock, then runs the daemon's job.
A failing Vault is a real one: the daemon's token's policy is rewritten on the server between
two of its requests (the adapter's request hook tells when), as an operator editing it would.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from test_quiet_daemon import HOUR, Quiet, _client, other_process, quiet
from test_rotation import World
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator import failpoints
from rotator.core.observation import RotateNow
from rotator.core.record import Phase
from rotator.daemon.scheduling import SKIPPED_LOG_EVERY, SkippedRuns
from rotator.reconciler.changes import ChangeLog

#: Everything under the test mount, as a daemon's policy would grant its paths.
GRANT = 'path "secret/*" { capabilities = ["create", "read", "update", "delete", "list"] }'


def _minutes(q: Quiet, count: int) -> None:
    for _ in range(count):
        q.tick(minutes=1)


def _deadline_of(world: World, name: str) -> tuple[object, str]:
    record = world.reconciler().record(name)[0]
    assert record.phase is Phase.AWAITING_ROLLOUT
    return record.deadline, "deadline"


def _policy(world: World, name: str, rules: str) -> None:
    world.openbao.write_policy(name, rules)


def test_a_vault_clock_stepped_back_an_hour_delays_no_sweep(world):
    """Vault's clock steps back an hour (NTP, a failover to a node behind) right after a sweep:
    another process's rotate-now is still read within one sweep interval of elapsed time, not
    an hour and ten minutes later."""
    q = quiet(world, count=3)
    _minutes(q, 10)  # the sweep at minute 10
    world.clock.now -= HOUR
    other_process(world).reconcile_target("web-2", RotateNow())
    _minutes(q, 10)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")


def test_a_dead_holders_lease_is_taken_over_though_vaults_clock_stepped_back(world):
    """A process dies holding web-2's lease; the sweep sees it and the daemon waits the lease's
    ttl of its own time: a step back of Vault's clock in between does not add an hour."""
    q = quiet(world, count=3)
    doomed = world.reconciler(me="doomed", client_factory=_client)
    doomed.listeners.append(ChangeLog(doomed.vault, world.settings.vault.state_path))
    failpoints.reset_for_tests("intercom.before_create=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            doomed.reconcile_target("web-2", RotateNow())
    finally:
        failpoints.reset_for_tests()
    _minutes(q, 10)
    assert q.wakeup("web-2")[1] in {"lease", "retry"}
    world.clock.now -= HOUR
    _minutes(q, 2)
    record = world.reconciler().record("web-2")[0]
    assert record.lease is None or record.lease.holder != "doomed"
    assert record.phase is Phase.AWAITING_ROLLOUT


def test_a_vault_clock_stepped_forward_sweeps_and_plans_on_the_new_time(world):
    """A step forward of a day runs the sweep and the full read at the next tick, and the
    targets' wakeups stay on the schedule Vault's time gives them."""
    q = quiet(world, count=3)
    other_process(world).reconcile_target("web-3", RotateNow())
    world.clock.now += timedelta(days=1)
    reasons = q.reasons(q.tick(minutes=1))
    assert "resync" in reasons
    assert q.wakeup("web-3")[1] in {"deadline", "poll", "due"}
    assert q.wakeup("web")[1] == "due"
    assert not any(q.tick(minutes=1) for _ in range(5))


def test_a_sweep_that_fails_half_way_loses_no_change(world):
    """The sweep reads the log's latest version, then Vault refuses the older one it needs:
    the next sweep still reads both targets another process wrote (the log is not taken as
    read up to a version it could not read)."""
    policy = f"quiet-{uuid.uuid4().hex}"
    _policy(world, policy, GRANT)
    trap = {"armed": False, "fired": False}

    def after_request(operation: str, reason: str, status: str) -> None:
        if not trap["armed"] or reason != "sweep":
            return
        if status == "200" and not trap["fired"]:
            trap["fired"] = True  # the latest version read: refuse what comes next
            _policy(world, policy, 'path "secret/data/none" { capabilities = ["deny"] }')
        elif status == "403":
            _policy(world, policy, GRANT)
            trap["armed"] = False

    token = world.openbao.create_token([policy], ttl="48h")
    q = quiet(world, count=3, token=token, after_request=after_request)
    other = other_process(world)
    other.reconcile_target("web-2", RotateNow())
    other.reconcile_target("web-3", RotateNow())
    trap["armed"] = True
    _minutes(q, 10)
    assert trap["fired"]
    assert not trap["armed"], "the sweep did not meet the refusal"
    assert q.wakeup("web-2")[1] == "due"  # not read: the sweep failed
    _minutes(q, 10)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")
    assert q.wakeup("web-3") == _deadline_of(world, "web-3")


def test_a_change_log_unreadable_at_start_loses_no_later_change(world):
    """At start the log cannot be read (a policy not yet granting it); it can by the next
    sweep: what another process wrote in between is still read, though that sweep is the
    daemon's first look at the log."""
    policy = f"quiet-{uuid.uuid4().hex}"
    changes = f"secret/data/{world.settings.vault.state_path}/_changes"
    _policy(world, policy, f'{GRANT}\npath "{changes}" {{ capabilities = ["deny"] }}')
    token = world.openbao.create_token([policy], ttl="48h")
    q = quiet(world, count=3, token=token)
    _policy(world, policy, GRANT)
    other_process(world).reconcile_target("web-2", RotateNow())
    _minutes(q, 10)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")


def _log_begun_again(world: World) -> tuple[Quiet, str]:
    """A quiet daemon of three targets sweeps once after another process's write; then an
    operator deletes ``_changes`` with all its versions and another process's rotate-now of
    web-2 writes it again up to the version the daemon last read. The daemon and the key."""
    q = quiet(world, count=3)
    other = other_process(world)
    other.reconcile_target("web", RotateNow())
    _minutes(q, 10)
    key = f"{world.settings.vault.state_path}/_changes"
    seen = world.openbao.read_metadata(key)["current_version"]
    admin = world.openbao.admin().secrets.kv.v2
    admin.delete_metadata_and_all_versions(path=key, mount_point="secret")
    other.reconcile_target("web-2", RotateNow())
    assert world.openbao.read_metadata(key)["current_version"] == seen
    return q, key


def test_a_change_log_deleted_and_begun_again_is_not_taken_for_the_old_one(world):
    """An operator deletes ``_changes`` with all its versions after a sweep; writers begin it
    again from version 1 and reach the version the daemon last read: the next sweep still
    reads the target they wrote."""
    q, _ = _log_begun_again(world)
    _minutes(q, 10)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")


@pytest.mark.parametrize(
    ("count", "ttl"), [(5, "1h"), (4, "2h")], ids=["5-targets-1h", "4-targets-2h"]
)
def test_the_guides_bound_holds_from_the_fewest_targets_it_names(world, count, ttl):
    """The guide's bound at the defaults (10-minute sweeps): at most 2 requests per target an
    hour from 5 targets with a renewable one-hour token, from 4 with a two-hour one; over a
    simulated day, every request (sweeps, full reads, renewals) averaged per target and hour.
    (Four targets with a one-hour token cost 2.03: the guide said "from about 4".)"""
    token = world.openbao.create_token(["root"], ttl=ttl, renewable=True)
    q = quiet(world, count=count, token=token)
    start = len(q.requests)
    _minutes(q, 24 * 60)
    day = q.requests[start:]
    assert len(day) / count / 24 <= 2, Counter(reason for _, reason, _ in day)
    assert "renew" in {operation for operation, _, _ in day}


def _older_rotator(world: World) -> None:
    """A process that writes web-2's record without noting it (a rotator too old to write the
    change log): a rotate-now only the full read can see."""
    world.reconciler(client_factory=_client).reconcile_target("web-2", RotateNow())


def test_a_write_nobody_noted_is_read_within_six_hours_with_a_daily_sweep(world):
    """``sweep_interval`` at its longest (24 h): the 6-hourly full read still comes every 6
    hours, not with the daily sweep."""
    q = quiet(world, count=3, sweep_interval=86400.0)
    _older_rotator(world)
    _minutes(q, 6 * 60)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")


def test_a_write_nobody_noted_is_read_within_six_hours_at_the_defaults(world):
    """At the defaults, the same write is read by the first full read, within 6 hours."""
    q = quiet(world, count=3)
    _minutes(q, 60)
    _older_rotator(world)
    _minutes(q, 5 * 60)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")


def test_a_change_log_keeping_one_version_still_names_a_single_change(world):
    """``max_versions=1`` on ``_changes`` (an operator's tidy policy): the version the last
    sweep read is gone, which is not the log begun again; one other process's note is read
    as the one target it names, not as "read everything"."""
    q = quiet(world, count=3)
    key = f"{world.settings.vault.state_path}/_changes"
    writer = ChangeLog(world.reconciler().vault, world.settings.vault.state_path)
    writer.note("web")
    _minutes(q, 10)
    world.openbao.admin().secrets.kv.v2.update_metadata(
        path=key, max_versions=1, mount_point="secret"
    )
    writer.note("web-2")
    _minutes(q, 9)
    sent = q.tick(minutes=1)
    # the log, when it was begun (the version the last sweep read is gone), web-2's record:
    # not all three records
    assert [(operation, reason) for operation, reason, _ in sent] == [
        ("read", "sweep"),
        ("read_metadata", "sweep"),
        ("read", "sweep"),
    ]


def test_two_replicas_each_read_the_others_writes_and_not_their_own(world):
    """Two daemons on the same targets: a CLI rotate-now is read by both at their sweep, one
    retires at the deadline, the other reads what it wrote at its next sweep and both rest
    until the schedule; neither reads a target again for its own notes."""
    first = quiet(world, count=3)
    second = quiet(world, count=3)

    def minutes(count: int) -> list[tuple[list[object], list[object]]]:
        sent = []
        for _ in range(count):
            one = first.tick(minutes=1)
            second.mono[0] += 60.0
            before = len(second.requests)
            second.daemon.run_once()
            sent.append((one, second.requests[before:]))
        return sent

    other_process(world).reconcile_target("web-2", RotateNow())
    minutes(10)
    deadline = _deadline_of(world, "web-2")
    assert first.wakeup("web-2") == deadline == second.wakeup("web-2")
    minutes(int((deadline[0] - world.clock()).total_seconds() // 60) + 1)
    assert world.reconciler().record("web-2")[0].phase is Phase.IDLE
    minutes(20)  # each reads the other's writes at a sweep (if it did not write them)
    assert first.wakeup("web-2")[1] == second.wakeup("web-2")[1] == "due"
    later = minutes(60)
    for q, sent in ((first, [a for a, _ in later]), (second, [b for _, b in later])):
        busy = [m for m, requests in enumerate(sent, start=1) if requests]
        assert all(len(sent[m - 1]) == 1 for m in busy), "read a record for its own notes"
        assert q.reasons([r for requests in sent for r in requests]) <= {"sweep"}


def test_a_cronjob_pass_writing_more_than_the_log_can_name_makes_the_sweep_read_all(world):
    """A CronJob's pass rotates four targets (a dozen notes, more than ``LOOKBACK``): the
    next sweep reads every record, and each rotated target is then planned for its deadline."""
    q = quiet(world, count=5)
    cronjob = other_process(world)
    for name in ("web", "web-2", "web-3", "web-4"):
        cronjob.reconcile_target(name, RotateNow())
    _minutes(q, 9)
    sent = q.tick(minutes=1)
    assert len([r for r in sent if r[0] == "read"]) >= 1 + 5
    for name in ("web", "web-2", "web-3", "web-4"):
        assert q.wakeup(name) == _deadline_of(world, name)
    assert q.wakeup("web-5")[1] == "due"


def test_a_note_for_a_target_this_daemon_does_not_know_reads_no_record(world):
    """Another configuration's target (a writer with more targets, or one renamed since)
    named in the log: the sweep reads the log and nothing else."""
    q = quiet(world, count=3)
    ChangeLog(world.reconciler().vault, world.settings.vault.state_path).note("ghost")
    _minutes(q, 9)
    sent = q.tick(minutes=1)
    assert [operation for operation, _, _ in sent] == ["read"]


def test_skipped_runs_are_told_again_after_vaults_clock_stepped_back(log_output):
    """The skipped-run line is throttled on Vault's time: a step back of an hour must not
    silence it for an hour and ten minutes."""
    now = [1_000_000.0]
    runs = SkippedRuns(lambda: None, lambda: now[0])
    event = JobEvent(EVENT_JOB_MAX_INSTANCES, "reconcile", "default")
    runs(event)
    now[0] += SKIPPED_LOG_EVERY / 2 - 3600.0
    runs(event)
    now[0] += SKIPPED_LOG_EVERY
    runs(event)
    said = [line for line in log_output.getvalue().splitlines() if "run_skipped" in line]
    assert len(said) == 3  # the first, the one after the step, one period after that


def test_a_target_failing_every_pass_is_retried_alone_and_the_others_stay_quiet(world):
    """Vault refuses web-3's record to this daemon (concurrency 8): web-3 is tried again every
    ``reconcile_interval``, alone (a documented cost of a failing target); the other targets are not read between sweeps, and another
    process's rotate-now of web-2 is still read at the sweep."""
    policy = f"quiet-{uuid.uuid4().hex}"
    record = f"secret/data/{world.settings.vault.state_path}/web-3"
    _policy(world, policy, f'{GRANT}\npath "{record}" {{ capabilities = ["deny"] }}')
    token = world.openbao.create_token([policy], ttl="48h")
    q = quiet(world, count=3, token=token)
    assert q.wakeup("web-3")[1] == "retry"
    other_process(world).reconcile_target("web-2", RotateNow())
    per_minute = [q.tick(minutes=1) for _ in range(10)]
    # each minute: web-3's read, refused, and the token lookup that tells a refusal from a
    # dead token; nothing for web or web-2
    expected = [("read", "retry"), ("lookup", "token")]
    assert all([r[:2] for r in sent] == expected for sent in per_minute[:9]), per_minute[:2]
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")
    assert q.wakeup("web")[1] == "due"
    assert q.wakeup("web-3")[1] == "retry"


@pytest.mark.target(rotate_on_drift=True)
def test_a_target_watching_for_drift_is_read_every_reconcile_interval(world):
    """``rotate_on_drift``: a change at Intercom, which no record announces, is looked for
    at every ``reconcile_interval``: two Vault reads a minute at the defaults (its record, the
    consumers' path), 120 an hour, outside the idle bound (as the guide now says)."""
    q = quiet(world)
    sent = [q.tick(minutes=1) for _ in range(9)]
    assert [[r[:2] for r in minute] for minute in sent] == [[("read", "drift")] * 2] * 9


def test_a_change_log_begun_again_past_the_pruned_version_last_read_is_not_the_old_one(world):
    """The log is deleted and begun again, and KV keeps one version of it (``max_versions=1``):
    the version the daemon last read is gone, as it would be from the old log's pruning, yet
    the versions the new log wrote before it are gone too. The next sweep still reads the
    target those versions named (web-2), not only the one the latest names (web-3)."""
    q, key = _log_begun_again(world)
    admin = world.openbao.admin().secrets.kv.v2
    admin.update_metadata(path=key, max_versions=1, mount_point="secret")
    ChangeLog(world.reconciler().vault, world.settings.vault.state_path).note("web-3")
    _minutes(q, 10)
    assert q.wakeup("web-2") == _deadline_of(world, "web-2")
