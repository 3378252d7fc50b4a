"""When a target must next be looked at: the daemon reads a target only when something can
happen to it.

Theory of operation
-------------------
A pass reads a target's record from Vault, and every read is a line in the customer's Vault
audit log. Most targets rest for weeks: their record alone says when anything can next happen
to them, and ``next_wakeup`` says it, from the record as a pass left it (or found it):

- its schedule comes due (``due_at``, the reconciler's ``next_rotation_at``), or the window a
  due start waits for opens (``WindowState.opens_at``);
- a grace deadline passes (``record.deadline``), or a retirement that waits for a window can
  happen once one opens;
- a backoff ends (``record.retry_at``);
- another process's lease may be taken over (its ``ttl`` of our time after we saw it);
- a probe round is due while a probed rollout waits (``probe_spacing``, at least ``poll``),
  even once it is done and a closed window holds its retirement (rounds still record streaks).

What other processes write (a ``rotate-now``, a ``pause``, an ``abort``, a confirmation taken by
another replica) cannot be known from the record: the daemon's sweep notices it
(``rotator.reconciler.changes``), and a hook call to this daemon acts at once. A blocked or
paused target waits for an operator, so for such a write: ``None``.

Anything that can happen *now* but did not in the pass that just ran (a list that lags, a
lease, a step left half-way) is looked at again after ``poll`` (``[daemon] reconcile_interval``),
never at once: a pass is never repeated in a loop. Pure: no clock, no I/O; the daemon passes
Vault's ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.core.lease import LONGEST_TTL
from rotator.core.observation import Policy, needs_intercom, needs_probes
from rotator.core.record import Phase, Record
from rotator.core.safety import rollout_done
from rotator.core.windows import WindowState, holds_retirement

#: Past a lease's ttl, so that the watch (``rotator.core.lease``) sees it unchanged for a
#: whole ttl of our time.
LEASE_MARGIN = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Wakeup:
    """The next time a pass of the target can change something, and why (a metric label)."""

    at: datetime
    #: ``due``, ``window``, ``deadline``, ``retry``, ``lease``, ``probe``, ``poll``, ``request``.
    reason: str


def next_wakeup(
    record: Record | None,
    policy: Policy,
    now: datetime,
    *,
    due_at: datetime | None,
    window: WindowState | None,
    poll: timedelta,
) -> Wakeup | None:
    """When a pass of this target can next change something (``None``: not before an
    operator or another process writes, which the sweep notices). Never earlier than
    ``now + poll`` for what could happen now."""
    found = _wakeup(record, policy, now, due_at=due_at, window=window, poll=poll)
    if found is None or found.at > now:
        return found
    return Wakeup(now + poll, found.reason)


def _wakeup(
    record: Record | None,
    policy: Policy,
    now: datetime,
    *,
    due_at: datetime | None,
    window: WindowState | None,
    poll: timedelta,
) -> Wakeup | None:
    if record is None:
        return Wakeup(now, "poll")  # nothing stored yet: the next pass provisions
    if record.lease is not None:
        ttl = record.lease.ttl if 0 <= record.lease.ttl <= LONGEST_TTL else LONGEST_TTL
        return Wakeup(now + timedelta(seconds=ttl) + LEASE_MARGIN, "lease")
    if record.paused is not None:
        return None  # until ``resume`` (another process's write, seen by the sweep)
    if record.abort is not None or (record.request is not None and not _waits(record)):
        return Wakeup(now, "request")
    if record.phase is Phase.BLOCKED:
        return None  # until an operator's rotate-now or resume
    if record.retry_at is not None and now < record.retry_at:
        return Wakeup(record.retry_at, "retry")
    if record.phase is Phase.IDLE:
        return _idle(record, policy, now, due_at=due_at, window=window, poll=poll)
    if record.phase is Phase.AWAITING_ROLLOUT:
        return _awaiting(record, policy, now, window=window, poll=poll)
    return Wakeup(now, "poll")  # creating or retiring left half-way: carry on


def _waits(record: Record) -> bool:
    """A request that waits for a back-out to end (``operator_requests.joinable``: it joins no
    back-out): the back-out's own times say when it can (its retirement may wait for a window).
    One that resumed a blocked back-out or sweep once already waits for an operator, as the
    block does."""
    if record.phase is Phase.BLOCKED:
        return record.request is not None and record.request.resumed
    return record.restoring is not None and record.phase is Phase.AWAITING_ROLLOUT


def _idle(
    record: Record,
    policy: Policy,
    now: datetime,
    *,
    due_at: datetime | None,
    window: WindowState | None,
    poll: timedelta,
) -> Wakeup | None:
    if record.current_id is None or due_at is None:
        return Wakeup(now, "due")  # nothing for consumers yet, or never rotated: due now
    if policy.watch_drift:
        # Drift is a change at Intercom, which no record announces: looked for every ``poll``.
        return Wakeup(min(due_at, now + poll), "drift")
    if due_at > now:
        return Wakeup(due_at, "due")
    return _window(window) or Wakeup(now, "due")


def _awaiting(
    record: Record,
    policy: Policy,
    now: datetime,
    *,
    window: WindowState | None,
    poll: timedelta,
) -> Wakeup | None:
    if needs_probes(record, policy, now=now):
        return Wakeup(now + max(poll, policy.probe_spacing), "probe")
    lists = needs_intercom(
        record, due=False, command=None, now=now, consumers=bool(policy.consumers)
    )
    if record.pending_absent_since is not None and lists:
        # Waiting for Intercom's list to show the new secret: only a pass that lists can see
        # it (one waiting for its grace deadline does not: the deadline wakes it, below).
        return Wakeup(now, "poll")
    if rollout_done(record, policy, now) is not None:
        return _held(record, policy, now, window) or Wakeup(now, "poll")
    grace = policy.confirmation != "hook"
    if grace and record.deadline is not None and now < record.deadline:
        return Wakeup(record.deadline, "deadline")
    # Waiting for confirmations only (a hook-only policy, or named consumers past the grace):
    # a hook call to this daemon acts at once, another process's is seen by the sweep.
    return None


def _held(
    record: Record, policy: Policy, now: datetime, window: WindowState | None
) -> Wakeup | None:
    """The opening a done rollout's retirement waits for (not an emergency's), or ``None``."""
    if rollout_done(record, policy, now) is None or not holds_retirement(record, window):
        return None
    return _window(window)


def _window(window: WindowState | None) -> Wakeup | None:
    """The wakeup for a step that waits for a window, or ``None`` when one is open."""
    if window is None or window.open:
        return None
    if window.opens_at is None:
        return None  # none opens within the horizon: the sweep's full reads look again
    return Wakeup(window.opens_at, "window")
