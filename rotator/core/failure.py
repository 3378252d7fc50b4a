"""A failed action, decided: blocked for good, or retried after a persisted backoff.

``rotator.core.machine`` applies an action's ``Failed`` result here. A permanent failure (a
revoked token, a missing scope) blocks the target until an operator acts; anything else is
retried after an exponential backoff (10 s doubling to an hour), or after what the server asked
for (``Retry-After``) when that is longer, capped at a day. The backoff is in the record, so
every process waits it out, not only the one that failed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rotator.backoff import exponential
from rotator.core import transitions as t
from rotator.core.observation import Decision, Failed
from rotator.core.record import Phase, Record
from rotator.durations import shifted

#: Seconds: the persisted backoff after a failed attempt, doubling up to an hour.
BACKOFF_BASE, BACKOFF_CAP = 10.0, 3600.0
#: Seconds: the longest wait a server may ask for (a Retry-After in milliseconds would be years).
LONGEST_DELAY = 86400.0


def failed(record: Record, failure: Failed, now: datetime) -> Decision:
    """The decision after ``failure``: blocked (permanent), or a backoff until a retry time."""
    if failure.permanent:
        blocked = t.blocked(record, failure.message, missing_scope=failure.missing_scope)
        if record.phase is Phase.BLOCKED and record.request is not None:
            # Only the list of a pass a waiting request resumes fails on a blocked record: that
            # was the request's one go (``operator_requests.unblocked``), not a reason to list
            # every poll.
            blocked = replace(blocked, request=replace(record.request, resumed=True))
        return Decision(blocked, None, failure.message)  # the phase says "blocked" already
    attempts = record.attempts + 1
    wait = exponential(attempts, base=BACKOFF_BASE, cap=BACKOFF_CAP)
    if failure.delay is not None and failure.delay > wait:  # NaN is never greater
        wait = min(failure.delay, LONGEST_DELAY)  # capped first: timedelta(1e300 s) overflows
    at = shifted(now, wait)
    backing_off = t.failed(
        record, message=failure.message, retry_at=at, missing_scope=failure.missing_scope
    )
    why = f"attempt {attempts} failed, retrying in {int(wait)}s: {failure.message}"
    return Decision(backing_off, None, why)
