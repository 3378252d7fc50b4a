"""What absence from Intercom's lists means: nothing at once, something after a while.

Intercom's lists lag behind creates and deletes, so one list that omits a secret proves nothing
(PRODUCT.md: a secret is gone only when Intercom says so for that id). These watches remember
since when (on Vault's clock) a secret that matters has been missing, and say when the absence
has lasted longer than lists lag (``LIST_LAG_TOLERANCE``): only then does it mean anything.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rotator.core.observation import LIST_LAG_TOLERANCE, Observation
from rotator.core.record import Record
from rotator.core.safety import live_ids, retired


def watch_consumer(record: Record, obs: Observation, now: datetime) -> tuple[Record, bool]:
    """Whether the consumers' secret is gone: retired by this target (Intercom answered its
    DELETE), or, with ``rotate_on_drift``, missing from Intercom's lists for longer than they
    lag (one list that omits it proves nothing)."""
    held = obs.consumer.intercom_id
    if held is not None and held in retired(record):
        return record, True  # Intercom answered our DELETE for it: gone, whatever a list shows
    if not obs.policy.watch_drift or held is None or obs.intercom is None:
        return record, False
    since, long = _absent(record.consumer_absent_since, now, listed=held in live_ids(obs))
    if since != record.consumer_absent_since:
        record = replace(record, consumer_absent_since=since)
    return record, long


def unlisted_since_long_stored(record: Record, obs: Observation, now: datetime) -> bool:
    """The list answer omits the new secret, though it was stored longer ago than lists lag
    (a younger one missing is just a list behind its create: its 201 answer is the proof)."""
    if obs.intercom is None or record.pending_id in live_ids(obs) or record.stored_at is None:
        return False
    return now - record.stored_at >= LIST_LAG_TOLERANCE


def watch_pending(record: Record, obs: Observation, now: datetime) -> tuple[Record, bool]:
    """Whether the new secret has been missing from Intercom's lists for longer than they lag."""
    if obs.intercom is None:
        return record, False
    since, long = _absent(
        record.pending_absent_since, now, listed=record.pending_id in live_ids(obs)
    )
    if since != record.pending_absent_since:
        record = replace(record, pending_absent_since=since)
    return record, long


def _absent(since: datetime | None, now: datetime, *, listed: bool) -> tuple[datetime | None, bool]:
    """Since when a list has omitted a secret (``None`` once one shows it), and whether that
    is longer than lists lag."""
    if listed:
        return None, False
    since = since or now
    return since, now - since >= LIST_LAG_TOLERANCE
