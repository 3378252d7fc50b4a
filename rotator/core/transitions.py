"""Every change a record goes through, named: the one file to open to change a transition.

Each function takes a record and returns the next one (``dataclasses.replace``, whose keyword
names mypy checks); none decides anything. ``rotator.core.machine`` decides which applies,
``rotator.core.adoption`` and ``rotator.core.confirmation`` use the same ones, so a transition
is written once; those of an abort live with its decision in ``rotator.core.abort``. Times are on
the clock every process shares (Vault's).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from rotator.core.record import (
    HISTORY_LIMIT,
    ConsumerProgress,
    HistoryEntry,
    Pause,
    Phase,
    Record,
    Request,
)
from rotator.durations import shifted
from rotator.redaction import SecretValue

#: Who retired the old secret when no confirmation came: the grace period.
BY_GRACE = "grace"
#: Who confirmed a rollout every named consumer confirmed, and a probed consumer by its probes.
BY_CONSUMERS = "consumers"
BY_PROBES = "probes"


def requested(record: Record, request: Request) -> Record:
    """An operator's rotate-now, merged with one already waiting: an emergency waiting about
    the current secret stands; a new emergency replaces whatever waited."""
    waiting = record.request
    if (
        waiting is not None
        and waiting.emergency
        and not request.emergency
        and waiting.leaked == record.current_id
    ):
        request = replace(waiting, resumed=False)  # a new ask: it may resume a block again
    return replace(record, request=request)


def start_rotation(
    record: Record,
    *,
    rotation_id: str,
    now: datetime,
    emergency: bool,
    current_fingerprint: str | None = None,
) -> Record:
    """idle -> creating: a new generation; the request that asked for it is served.
    ``current_fingerprint``: the consumers' copy of the current secret, which an abort checks
    the KV version it would restore against."""
    return replace(
        record,
        phase=Phase.CREATING,
        generation=record.generation + 1,
        rotation_id=rotation_id,
        planned_name=None,
        pending_id=None,
        pending_secret=None,
        pending_created_at=None,
        adoption=False,
        pending_fingerprint=None,
        old_ids=(),
        retired_ids=(),
        started_at=now,
        stored_at=None,
        stored_version=None,
        deadline=None,
        confirmed_at=None,
        confirmed_by=None,
        emergency=emergency,
        attempts=0,
        retry_at=None,
        last_error=None,
        missing_scope=None,
        request=None,
        pending_absent_since=None,
        rollout=(),
        stalled_at=None,
        current_fingerprint=current_fingerprint,
        abort=None,
        restoring=None,
    )


def planned(record: Record, name: str) -> Record:
    """The exact name of the next create, recorded before the POST (the handle on a lost
    answer, and how the target recognises what it created)."""
    return replace(record, planned_name=name, owned_names=record.remember_name(name))


def committed(
    record: Record, *, secret_id: str, secret: SecretValue, created_at: int | None
) -> Record:
    """The commit point: the new secret's material is in the record, so in Vault, and its id is
    known from now on (never an orphan, never deleted without a rollout)."""
    return replace(
        healthy(record),
        pending_id=secret_id,
        pending_secret=secret,
        pending_created_at=created_at,
        known_ids=record.remember_id(secret_id),
    )


def stored(record: Record, *, at: datetime, grace: timedelta, version: int) -> Record:
    """-> awaiting_rollout: the consumers' path holds the new secret (read back) since ``at``, in
    its ``version``. Any confirmation recorded before is void: it did not confirm *this* store."""
    return replace(
        record,
        phase=Phase.AWAITING_ROLLOUT,
        stored_at=at,
        stored_version=version,
        deadline=shifted(at, grace),
        confirmed_at=None,
        confirmed_by=None,
        known_ids=record.remember_id(record.pending_id),
        pending_absent_since=None,
        rollout=(),
        stalled_at=None,
    )


def confirmed(record: Record, *, at: datetime, by: str) -> Record:
    """The rollout of the stored secret is confirmed (by the hook, the CLI, or its grace)."""
    return replace(record, confirmed_at=at, confirmed_by=by)


def retiring(record: Record, ids: tuple[str, ...]) -> Record:
    """-> retiring: ``ids`` (each already judged this target's) join the secrets to delete."""
    return replace(
        record, phase=Phase.RETIRING, old_ids=tuple(dict.fromkeys((*record.old_ids, *ids)))
    )


def deleted(record: Record, secret_id: str) -> Record:
    """Intercom said ``secret_id`` is gone: off the list to delete, onto the list of retired."""
    return replace(
        healthy(record),
        old_ids=tuple(i for i in record.old_ids if i != secret_id),
        retired_ids=tuple(dict.fromkeys((*record.retired_ids, secret_id))),
    )


def completed(record: Record, *, now: datetime) -> Record:
    """retiring -> idle: the new secret is current, the rotation goes into the history (as
    aborted, when it was the back-out of one: the secret restored is current again)."""
    new_id = record.pending_id or ""
    back = record.restoring
    entry = HistoryEntry(
        rotation_id=record.rotation_id or "?",
        generation=record.generation,
        new_id=new_id,
        retired_ids=record.retired_ids,
        started_at=record.started_at or now,
        stored_at=record.stored_at,
        confirmed_at=record.confirmed_at,
        confirmed_by=record.confirmed_by,
        finished_at=now,
        emergency=record.emergency,
        outcome="aborted" if back is not None else "completed",
        by=back.by if back is not None else None,
        reason=back.reason if back is not None else None,
    )
    if back is not None:
        entry = replace(entry, rotation_id=back.rotation_id, started_at=back.at)
    return replace(
        rested(record),
        current_id=new_id,
        known_ids=record.remember_id(new_id),
        # Anchored on the start, so grace periods do not make the schedule drift.
        last_rotation_at=record.started_at or now,
        history=(*record.history, entry)[-HISTORY_LIMIT:],
    )


def swept(record: Record) -> Record:
    """A sweep of orphans (no rotation under way) is over: back to idle."""
    return replace(record, phase=Phase.IDLE, old_ids=(), retired_ids=())


def rested(record: Record) -> Record:
    """Back to idle with nothing under way (the current secret and history are kept, and so are
    the times of the last store and confirmation: ``status`` and notifications read them)."""
    return replace(
        record,
        phase=Phase.IDLE,
        pending_id=None,
        pending_secret=None,
        pending_created_at=None,
        adoption=False,
        pending_fingerprint=None,
        old_ids=(),
        retired_ids=(),
        planned_name=None,
        attempts=0,
        retry_at=None,
        last_error=None,
        missing_scope=None,
        emergency=False,
        blocked_reason=None,
        resume_phase=None,
        pending_absent_since=None,
        rollout=(),
        stalled_at=None,
        restoring=None,
    )


def blocked(record: Record, reason: str, *, missing_scope: str | None = None) -> Record:
    """-> blocked: nothing more happens until an operator acts; the phase to resume is kept."""
    return replace(
        record,
        phase=Phase.BLOCKED,
        resume_phase=record.phase if record.phase is not Phase.BLOCKED else record.resume_phase,
        blocked_reason=reason,
        last_error=reason,
        missing_scope=missing_scope,
    )


def unblocked(record: Record) -> Record:
    """blocked -> the phase it was blocked in (``restore`` then decides whether the new secret
    must be stored again)."""
    return replace(
        record,
        phase=record.resume_phase or Phase.IDLE,
        blocked_reason=None,
        resume_phase=None,
        attempts=0,
        retry_at=None,
        last_error=None,
        missing_scope=None,
        # An operator looked: absences count again from the next list.
        pending_absent_since=None,
        consumer_absent_since=None,
        # Confirmations by the hook or an operator stand; what probes saw is judged again from
        # the next round (the world may have moved while the target was blocked).
        rollout=tuple(
            replace(p, streak=0, streak_at=None)
            if p.confirmed_by != BY_PROBES
            else replace(p, streak=0, streak_at=None, confirmed_at=None, confirmed_by=None)
            for p in record.rollout
        ),
        stalled_at=None,
    )


def store_again(record: Record) -> Record:
    """-> creating: the consumers' path no longer holds the new secret as it was stored, so it
    is stored again, and any confirmation is void: it confirmed a store something undid."""
    return replace(
        record,
        phase=Phase.CREATING,
        confirmed_at=None,
        confirmed_by=None,
        rollout=(),
        stalled_at=None,
    )


def failed(
    record: Record, *, message: str, retry_at: datetime, missing_scope: str | None = None
) -> Record:
    """An attempt failed for a reason that may pass: try again at ``retry_at``."""
    return replace(
        record,
        attempts=record.attempts + 1,
        retry_at=retry_at,
        last_error=message,
        missing_scope=missing_scope,
    )


def healthy(record: Record) -> Record:
    """An action succeeded: the failure count and its backoff are over."""
    if record.attempts == 0 and record.retry_at is None and record.last_error is None:
        return record
    return replace(record, attempts=0, retry_at=None, last_error=None, missing_scope=None)


def adopted_as_current(record: Record, secret_id: str, *, now: datetime) -> Record:
    """Consumers hold ``secret_id``, which becomes the current secret (none was live before)."""
    return replace(
        record, current_id=secret_id, known_ids=record.remember_id(secret_id), last_rotation_at=now
    )


def adopting(
    record: Record,
    secret_id: str,
    *,
    now: datetime,
    grace: timedelta,
    rotation_id: str,
    version: int,
    fingerprint: str | None,
) -> Record:
    """Consumers hold ``secret_id`` while the current secret is live: the current one is retired
    like a rotation's old secret, after the grace period or a confirmation (never at once)."""
    return replace(
        start_rotation(rested(record), rotation_id=rotation_id, now=now, emergency=False),
        phase=Phase.AWAITING_ROLLOUT,
        pending_id=secret_id,
        adoption=True,
        pending_fingerprint=fingerprint,
        stored_at=now,
        stored_version=version,
        deadline=shifted(now, grace),
        known_ids=record.remember_id(secret_id),
        request=record.request,
    )


def consumer_probed(record: Record, progress: ConsumerProgress) -> Record:
    """A consumer's progress as a probe round left it (replacing the entry of the same name)."""
    others = tuple(p for p in record.rollout if p.name != progress.name)
    return replace(record, rollout=(*others, progress))


def consumer_confirmed(
    record: Record, progress: ConsumerProgress, *, at: datetime, by: str
) -> Record:
    """A named consumer confirmed the secret as stored now (by the hook, the CLI or its probes);
    ``progress`` is its entry for this store (a fresh one when it had none)."""
    return consumer_probed(record, replace(progress, confirmed_at=at, confirmed_by=by))


def stalled(record: Record, *, at: datetime) -> Record:
    """The grace deadline passed while a probe still sees consumers on the old secret."""
    return replace(record, stalled_at=at)


def paused(record: Record, pause: Pause) -> Record:
    """An operator's pause: kept in any phase (a rotation under way keeps both secrets live)."""
    return replace(record, paused=pause)


def unpaused(record: Record) -> Record:
    """``rotator resume``: the target acts again from the phase it rests in."""
    return replace(record, paused=None)
