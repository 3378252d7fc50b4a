"""``rotator.core.wakeups.next_wakeup``: when a pass of a target can next change something, from
its record alone (pure: no clock, no I/O). The daemon reads a target only then, plus sweeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotator.core.observation import Policy
from rotator.core.record import Lease, Pause, Phase, Record, Request
from rotator.core.wakeups import LEASE_MARGIN, Wakeup, next_wakeup
from rotator.core.windows import WindowState

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLL = timedelta(minutes=1)
DUE = NOW + timedelta(days=20)
IDLE = Record(target="web", current_id="100", last_rotation_at=NOW - timedelta(days=10))
AWAITING = replace(
    IDLE,
    phase=Phase.AWAITING_ROLLOUT,
    pending_id="101",
    deadline=NOW + timedelta(hours=5),
    stored_at=NOW - timedelta(hours=19),
)


def policy(confirmation: str = "hook-or-grace", **more: object) -> Policy:
    return Policy(
        target="web",
        secret_name="Web",
        grace_period=timedelta(hours=24),
        confirmation=confirmation,  # type: ignore[arg-type]
        **more,  # type: ignore[arg-type]
    )


def wake(
    record: Record | None,
    rules: Policy | None = None,
    *,
    due_at: datetime | None = DUE,
    window: WindowState | None = None,
) -> Wakeup | None:
    return next_wakeup(record, rules or policy(), NOW, due_at=due_at, window=window, poll=POLL)


def test_a_resting_target_wakes_when_its_schedule_comes_due():
    """Idle and not due: the due time, nothing before it."""
    assert wake(IDLE) == Wakeup(DUE, "due")


def test_a_due_start_outside_its_window_wakes_when_the_window_opens():
    """Due already, a window closed until tomorrow 09:00: then, not every poll."""
    opens = NOW + timedelta(hours=21)
    closed = WindowState(open=False, opens_at=opens)
    assert wake(IDLE, due_at=NOW - timedelta(minutes=5), window=closed) == Wakeup(opens, "window")


def test_what_can_happen_now_waits_a_poll_so_passes_never_loop():
    """Due now with no window, a request, a step left half-way: the next look is a poll away."""
    assert wake(IDLE, due_at=NOW) == Wakeup(NOW + POLL, "due")
    asked = replace(IDLE, request=Request(emergency=False, by="ops", at=NOW))
    assert wake(asked) == Wakeup(NOW + POLL, "request")
    assert wake(replace(IDLE, phase=Phase.RETIRING, old_ids=("99",))) == Wakeup(NOW + POLL, "poll")


def test_a_grace_deadline_wakes_the_rollout_then_a_hook_only_rollout_waits_for_its_call():
    """hook-or-grace: the deadline. hook: no time at all (its confirmation is a write that this
    daemon's hook acts on at once, or the sweep sees). Past the grace: retire at the next poll."""
    assert wake(AWAITING) == Wakeup(AWAITING.deadline, "deadline")
    assert wake(AWAITING, policy("hook")) is None
    late = replace(AWAITING, deadline=NOW - timedelta(seconds=1))
    assert wake(late) == Wakeup(NOW + POLL, "poll")


def test_a_backoff_wakes_at_its_retry_time():
    """A failed attempt: its retry_at, whatever the phase would say."""
    retry = NOW + timedelta(minutes=7)
    failing = replace(AWAITING, attempts=2, retry_at=retry, last_error="503")
    assert wake(failing) == Wakeup(retry, "retry")


def test_another_process_lease_wakes_once_it_may_be_taken_over():
    """A lease: its ttl of our time (and a second), when the lease watch lets us take over."""
    held = replace(AWAITING, lease=Lease(holder="other", nonce="n1", ttl=30.0))
    assert wake(held) == Wakeup(NOW + timedelta(seconds=30) + LEASE_MARGIN, "lease")


@pytest.mark.parametrize(
    "record",
    [
        replace(IDLE, paused=Pause(by="alice", at=NOW, reason="freeze")),
        replace(IDLE, phase=Phase.BLOCKED, resume_phase=Phase.IDLE, blocked_reason="403"),
    ],
    ids=["paused", "blocked"],
)
def test_a_paused_or_blocked_target_waits_for_an_operator(record):
    """Nothing happens to it until someone writes (resume, rotate-now): the sweep sees that."""
    assert wake(record) is None


def test_drift_is_looked_for_every_poll_and_nothing_stored_is_provisioned():
    """rotate_on_drift watches Intercom, which no record announces; no record: provision."""
    assert wake(IDLE, policy(watch_drift=True)) == Wakeup(NOW + POLL, "drift")
    assert wake(None) == Wakeup(NOW + POLL, "poll")


def test_a_new_secret_missing_from_a_list_is_looked_for_when_a_pass_lists_again():
    """A new secret a list omitted is only judged on the next list, and a pass waiting for its
    grace deadline lists nothing: no wakeup every poll until then (an hour of reads for
    nothing), the deadline. A confirmed rollout, an emergency or named consumers list at
    every pass: those look again after a poll."""
    unlisted = replace(AWAITING, pending_absent_since=NOW - timedelta(minutes=3))
    assert wake(unlisted) == Wakeup(AWAITING.deadline, "deadline")
    assert wake(unlisted, policy("hook")) is None  # its confirmation, heard at once
    confirmed = replace(unlisted, confirmed_at=NOW, confirmed_by="hook")
    assert wake(confirmed) == Wakeup(NOW + POLL, "poll")
    assert wake(replace(unlisted, emergency=True)) == Wakeup(NOW + POLL, "poll")
    late = replace(unlisted, deadline=NOW - timedelta(seconds=1))
    assert wake(late) == Wakeup(NOW + POLL, "poll")
