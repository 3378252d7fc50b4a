"""The rotation state machine: a pure function from (record, observation, now) to a decision.

Theory of operation
-------------------
A *pass* gathers the world into one ``Observation`` (the target's record, what the consumers'
Vault path holds, Intercom's live secrets when needed, whether the schedule says "due", an
operator's command, and the result of the action just taken). ``step`` turns it into a
``Decision``: the record to persist, at most one ``Action`` to take *after* that write succeeds,
and a reason that logs, ``status`` and metrics reuse. The reconciler persists, acts, feeds the
result back in, and repeats until a decision has no action. Nothing here performs I/O or reads a
clock; fresh randomness (rotation ids, name suffixes) arrives in the observation.

    idle ──due / rotate-now──▶ creating ──created, in Vault, read back──▶ awaiting_rollout
      ▲                                                                │ confirmed for THIS
      └───────── every old secret deleted ◀── retiring ◀───────────────┘ secret, or grace

The rules of PRODUCT.md, as this module keeps them:
1. Nothing is deleted unless the consumers' path holds the newer secret (read back, same
   fingerprint), that secret is live at Intercom, and it was confirmed, its grace elapsed, or the
   rotation is an emergency. ``_unsafe_to_delete`` checks all of it before every delete.
2. Only ids this target created (their names are recorded before the POST), or the config adopts,
   or that were current, are ever put on ``old_ids``; never the consumers' secret, never the last.
3. Every decision with an action carries the record to persist first. A secret found at Intercom
   under a recorded name without its material in the record is an orphan: deleted, then a fresh
   create under a new name. A lost DELETE is repeated; 404 is done.
4. A decision that acts takes the lease; the reconciler's check-and-set write is the fence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import datetime, timedelta

from rotator.observation import (
    ConsumerView,
    Create,
    Created,
    CreateUnknown,
    Decision,
    Delete,
    Deleted,
    Failed,
    Observation,
    Policy,
    RotateNow,
    Store,
    Stored,
)
from rotator.record import HistoryEntry, Lease, Phase, Record

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(hours=1)


def needs_intercom(record: Record | None, *, due: bool, command: object, now: datetime) -> bool:
    """Whether a pass must list Intercom's secrets before deciding (idle targets need not)."""
    if command is not None or record is None:
        return True
    if record.phase is Phase.BLOCKED:
        return False
    if record.retry_at is not None and now < record.retry_at:
        return False
    if record.phase is Phase.IDLE:
        return due
    if record.phase is Phase.AWAITING_ROLLOUT:
        return record.confirmed_at is not None or (
            record.deadline is not None and now >= record.deadline
        )
    return True


def initial_record(policy: Policy, consumer: ConsumerView, now: datetime) -> Record:
    """A target seen for the first time adopts whatever secret its consumers' path holds."""
    last = (
        datetime.fromtimestamp(consumer.created_at, tz=now.tzinfo)
        if consumer.created_at is not None
        else (now if consumer.intercom_id else None)
    )
    return Record(target=policy.target, current_id=consumer.intercom_id, last_rotation_at=last)


# --- the step -----------------------------------------------------------------------------------


def step(record: Record, obs: Observation, now: datetime) -> Decision:
    """Decide what to do next for one target. Pure: same inputs, same decision."""
    if obs.result is not None:
        return _settle(_apply_result(record, obs, now), obs)
    if record.phase is Phase.BLOCKED:
        if not isinstance(obs.command, RotateNow):
            return _rest(record, f"blocked: {record.blocked_reason}")
        record = record.evolve(
            phase=record.resume_phase or Phase.IDLE,
            blocked_reason=None,
            resume_phase=None,
            attempts=0,
            retry_at=None,
        )
    elif record.retry_at is not None and now < record.retry_at and obs.command is None:
        return _rest(
            record, f"backing off until {record.retry_at.isoformat()}: {record.last_error}"
        )
    if (
        isinstance(obs.command, RotateNow)
        and obs.command.emergency
        and record.phase is not Phase.IDLE
    ):
        record = record.evolve(emergency=True)
    decision = _HANDLERS[record.phase](record, obs, now)
    if decision.action is not None and not obs.lease_free:
        holder = record.lease.holder if record.lease else "another process"
        return Decision(record, None, f"waiting: {holder} holds the lease")
    return _settle(decision, obs)


def _settle(decision: Decision, obs: Observation) -> Decision:
    """Attach or drop the lease: held while acting, released when resting."""
    record = decision.record
    if decision.action is None:
        return Decision(record.evolve(lease=None), None, decision.reason)
    nonce = obs.fresh[-8:] + str(record.generation)
    lease = Lease(holder=obs.me, nonce=f"{nonce}-{_serial(record)}", ttl=obs.policy.lease_ttl)
    return Decision(record.evolve(lease=lease), decision.action, decision.reason)


def _serial(record: Record) -> str:
    # Distinct per write within one pass, so others see the holder is alive.
    return f"{record.phase.value}.{len(record.old_ids)}.{record.pending_id or '-'}"


def _rest(record: Record, reason: str) -> Decision:
    return Decision(record, None, reason)


# --- phases -----------------------------------------------------------------------------------


def _idle(record: Record, obs: Observation, now: datetime) -> Decision:
    consumer_id = obs.consumer.intercom_id
    # A secret someone put at the consumers' path (adoption) becomes the current one.
    if (
        consumer_id is not None
        and consumer_id != record.current_id
        and obs.intercom is not None
        and consumer_id in _live(obs)
    ):
        record = record.evolve(current_id=consumer_id)
    if obs.intercom is not None:
        orphans = _orphans(record, obs)
        if orphans:
            swept = record.evolve(phase=Phase.RETIRING, old_ids=orphans)
            return Decision(
                swept, Delete(orphans[0]), f"deleting {len(orphans)} orphaned secret(s) it created"
            )
    wanted = isinstance(obs.command, RotateNow) or obs.due
    if not wanted:
        return _rest(record, "idle: not due")
    if obs.intercom is None:
        return _rest(record, "idle: due, but Intercom was not listed")
    rotation_id = f"r{obs.fresh[:12]}"
    generation = record.generation + 1
    started = record.evolve(
        phase=Phase.CREATING,
        generation=generation,
        rotation_id=rotation_id,
        pending_id=None,
        pending_secret=None,
        pending_created_at=None,
        old_ids=(),
        started_at=now,
        stored_at=None,
        deadline=None,
        confirmed_at=None,
        confirmed_by=None,
        emergency=isinstance(obs.command, RotateNow) and obs.command.emergency,
        attempts=0,
        retry_at=None,
        last_error=None,
    )
    why = "rotate-now" if isinstance(obs.command, RotateNow) else "schedule due"
    return _create(started, obs, f"rotation {rotation_id} started ({why})")


def _creating(record: Record, obs: Observation, now: datetime) -> Decision:
    if obs.intercom is None:
        return _rest(record, "creating: Intercom was not listed")
    live = _live(obs)
    if record.pending_id is None:
        orphans = _orphans(record, obs)
        if orphans:
            marked = record.evolve(old_ids=tuple(dict.fromkeys((*record.old_ids, *orphans))))
            return Decision(
                marked,
                Delete(orphans[0]),
                f"secret {orphans[0]} was created but its material never reached Vault: "
                "deleting the orphan before creating a fresh one",
            )
        return _create(record, obs, "creating the new secret")
    if record.pending_id not in live:
        dropped = record.evolve(pending_id=None, pending_secret=None, pending_created_at=None)
        return _create(dropped, obs, f"new secret {record.pending_id} vanished at Intercom; again")
    consumer = obs.consumer
    secret = record.pending_secret
    if (
        secret is not None
        and consumer.intercom_id == record.pending_id
        and consumer.fingerprint == secret.fingerprint()
    ):
        return _stored(record, obs, now)
    return Decision(
        record, Store(cas=consumer.version), f"storing secret {record.pending_id} in Vault"
    )


def _stored(record: Record, obs: Observation, now: datetime) -> Decision:
    stored = record.evolve(
        phase=Phase.AWAITING_ROLLOUT,
        stored_at=now,
        deadline=now + obs.policy.grace_period,
    )
    if record.emergency or record.current_id is None or record.current_id == record.pending_id:
        reason = (
            "emergency: retiring the old secret now" if record.emergency else "nothing to retire"
        )
        return _retire(stored, obs, now, reason)
    return _rest(stored, f"stored secret {record.pending_id}; awaiting rollout")


def _awaiting(record: Record, obs: Observation, now: datetime) -> Decision:
    secret = record.pending_secret
    if obs.consumer.intercom_id != record.pending_id or (
        secret is not None and obs.consumer.fingerprint != secret.fingerprint()
    ):
        return _block(
            record,
            f"the consumers' Vault path no longer holds the new secret {record.pending_id}; "
            "someone changed it during the rotation. Check it, then run rotate-now to resume.",
        )
    if obs.intercom is not None and record.pending_id not in _live(obs):
        return _block(
            record,
            f"the new secret {record.pending_id} was deleted at Intercom while consumers use it",
        )
    policy = obs.policy
    if record.emergency:
        return _retire(record, obs, now, "emergency: retiring the old secret now")
    if record.confirmed_at is not None and policy.confirmation != "grace":
        return _retire(record, obs, now, f"rollout confirmed ({record.confirmed_by})")
    if policy.confirmation != "hook" and record.deadline is not None and now >= record.deadline:
        graced = record.evolve(confirmed_by=record.confirmed_by or "grace")
        return _retire(graced, obs, now, "grace period elapsed")
    waits_for = {"hook": "the confirmation hook", "grace": "the grace deadline"}.get(
        policy.confirmation, "the confirmation hook or the grace deadline"
    )
    return _rest(record, f"awaiting rollout of {record.pending_id}: waiting for {waits_for}")


def _retire(record: Record, obs: Observation, now: datetime, reason: str) -> Decision:
    olds = (
        [record.current_id] if record.current_id and record.current_id != record.pending_id else []
    )
    if obs.intercom is not None:
        olds += _orphans(record, obs)
    retiring = record.evolve(
        phase=Phase.RETIRING, old_ids=tuple(dict.fromkeys((*record.old_ids, *olds)))
    )
    return _retiring(retiring, obs, now, reason)


def _retiring(record: Record, obs: Observation, now: datetime, reason: str = "") -> Decision:
    if obs.intercom is None:
        return _rest(record, "retiring: Intercom was not listed")
    live = _live(obs)
    remaining = tuple(i for i in record.old_ids if i in live)
    if remaining != record.old_ids:
        record = record.evolve(old_ids=remaining)  # already gone: no call needed
    if not remaining:
        return _complete(record, now)
    target_id = remaining[0]
    problem = _unsafe_to_delete(record, obs, target_id)
    if problem:
        return _block(record, f"refusing to delete secret {target_id}: {problem}")
    return Decision(record, Delete(target_id), reason or f"retiring secret {target_id}")


def _complete(record: Record, now: datetime) -> Decision:
    if record.pending_id is None:  # a sweep of orphans, not a rotation
        return _rest(record.evolve(phase=Phase.IDLE, old_ids=()), "orphans swept")
    finished = now
    entry = HistoryEntry(
        rotation_id=record.rotation_id or "?",
        generation=record.generation,
        new_id=record.pending_id,
        retired_ids=tuple(i for i in (record.current_id,) if i and i != record.pending_id),
        started_at=record.started_at or finished,
        stored_at=record.stored_at,
        confirmed_at=record.confirmed_at,
        confirmed_by=record.confirmed_by,
        finished_at=finished,
        emergency=record.emergency,
    )
    done = record.evolve(
        phase=Phase.IDLE,
        current_id=record.pending_id,
        pending_id=None,
        pending_secret=None,
        pending_created_at=None,
        old_ids=(),
        # Anchored on the start, so grace periods do not make the schedule drift.
        last_rotation_at=record.started_at or finished,
        planned_name=None,
        attempts=0,
        retry_at=None,
        last_error=None,
        emergency=False,
        history=(*record.history, entry)[-20:],
    )
    return _rest(done, f"rotation {record.rotation_id} complete: {record.pending_id} is current")


def _blocked(record: Record, _obs: Observation, _now: datetime) -> Decision:  # pragma: no cover
    return _rest(record, f"blocked: {record.blocked_reason}")


# The transition table: one handler per phase, each returning the next decision.
_HANDLERS: dict[Phase, Callable[[Record, Observation, datetime], Decision]] = {
    Phase.IDLE: _idle,
    Phase.CREATING: _creating,
    Phase.AWAITING_ROLLOUT: _awaiting,
    Phase.RETIRING: _retiring,
    Phase.BLOCKED: _blocked,
}

# --- results ----------------------------------------------------------------------------------


def _apply_result(record: Record, obs: Observation, now: datetime) -> Decision:
    result = obs.result
    if isinstance(result, Failed):
        return _fail(record, result, now)
    if isinstance(result, Created):
        if record.phase is not Phase.CREATING or result.name != record.planned_name:
            return _rest(record, "ignored a create result that is not this rotation's")
        created = record.evolve(
            pending_id=result.secret_id,
            pending_secret=result.secret,
            pending_created_at=result.created_at,
            attempts=0,
            last_error=None,
        )
        # Persisting this record is the commit point: the material is in Vault from now on.
        return Decision(
            created, Store(cas=obs.consumer.version), f"created secret {result.secret_id}"
        )
    if isinstance(result, CreateUnknown):
        return _rest(record, f"create outcome unknown ({result.message}); listing to find out")
    if isinstance(result, Stored):
        secret = record.pending_secret
        if (
            secret is None
            or result.consumer.intercom_id != record.pending_id
            or result.consumer.fingerprint != secret.fingerprint()
        ):
            return _fail(
                record,
                Failed("read-back of the consumers' path did not match", permanent=False),
                now,
            )
        return _stored(record, obs, now)
    assert isinstance(result, Deleted)  # noqa: S101 - Result is a closed union
    left = record.evolve(old_ids=tuple(i for i in record.old_ids if i != result.secret_id))
    # Carry on in the same pass: the next delete, completion, or the create after an orphan.
    return _HANDLERS[left.phase](left, replace(obs, result=None), now)


def _fail(record: Record, failure: Failed, now: datetime) -> Decision:
    if failure.permanent:
        return _block(record, failure.message)
    attempts = record.attempts + 1
    wait = backoff_for(attempts)
    if failure.delay is not None:
        wait = max(wait, timedelta(seconds=failure.delay))
    return _rest(
        record.evolve(attempts=attempts, retry_at=now + wait, last_error=failure.message),
        f"attempt {attempts} failed, retrying in {int(wait.total_seconds())}s: {failure.message}",
    )


def _block(record: Record, reason: str) -> Decision:
    blocked = record.evolve(
        phase=Phase.BLOCKED,
        resume_phase=record.phase if record.phase is not Phase.BLOCKED else record.resume_phase,
        blocked_reason=reason,
        last_error=reason,
    )
    return _rest(blocked, f"blocked: {reason}")


# --- helpers ----------------------------------------------------------------------------------


def _create(record: Record, obs: Observation, reason: str) -> Decision:
    # A fresh name for every attempt, recorded before the POST: a late answer to an earlier
    # attempt can then never be mistaken for this one, and every name stays recognisable.
    name = f"{obs.policy.secret_name} · rotator g{record.generation} {obs.fresh[-6:]}"
    planned = record.evolve(planned_name=name, owned_names=record.remember_name(name))
    return Decision(planned, Create(name), reason)


def _live(obs: Observation) -> set[str]:
    return {s.id for s in obs.intercom or ()}


def _orphans(record: Record, obs: Observation) -> tuple[str, ...]:
    """Live secrets under a name this target recorded, that nothing uses or tracks."""
    keep = {record.current_id, record.pending_id, obs.consumer.intercom_id}
    owned = set(record.owned_names)
    return tuple(s.id for s in obs.intercom or () if s.name in owned and s.id not in keep)


def _unsafe_to_delete(record: Record, obs: Observation, secret_id: str) -> str | None:
    """Why deleting ``secret_id`` now could break rule 1 or 2; ``None`` when it is safe."""
    consumer = obs.consumer
    live = _live(obs)
    if secret_id == consumer.intercom_id:
        return "the consumers' Vault path holds it"
    keeper = record.pending_id or record.current_id
    if keeper is None or keeper == secret_id:
        return "it would leave the target without a live secret"
    if keeper not in live:
        return f"the secret that replaces it ({keeper}) is not live at Intercom"
    if consumer.intercom_id != keeper:
        return f"the consumers' Vault path does not hold its replacement {keeper}"
    if record.pending_id is not None:
        secret = record.pending_secret
        if secret is None or consumer.fingerprint != secret.fingerprint():
            return "the consumers' copy of the new secret does not match what Intercom issued"
        if not (record.emergency or record.confirmed_by or record.confirmed_at):
            return "the new secret was neither confirmed nor past its grace period"
    if not _owned(record, obs, secret_id):
        return "this target did not create or adopt it"
    return None


def _owned(record: Record, obs: Observation, secret_id: str) -> bool:
    if secret_id in obs.policy.adopt or secret_id == record.current_id:
        return True
    names: Collection[str] = record.owned_names
    return any(s.id == secret_id and s.name in names for s in obs.intercom or ())


# --- confirmations -------------------------------------------------------------------------------


def confirm(
    record: Record,
    policy: Policy,
    *,
    secret_id: str | None,
    rotation_id: str | None,
    via: str,
    now: datetime,
) -> tuple[Record | None, str, str]:
    """Apply a rollout confirmation: ``(record to persist or None, status, message)``.

    Only a confirmation naming the secret (or rotation) now awaiting rollout counts; anything
    else changes nothing, so a stale, replayed or misdirected call is harmless.
    """
    names_it = (secret_id is not None and secret_id == record.pending_id) or (
        rotation_id is not None and rotation_id == record.rotation_id
    )
    if secret_id is not None and rotation_id is not None and secret_id != record.pending_id:
        names_it = False
    if record.phase is not Phase.AWAITING_ROLLOUT:
        done = record.history[-1] if record.history else None
        if record.phase is Phase.RETIRING and names_it:
            return None, "already_confirmed", "the rotation is already retiring the old secret"
        if done is not None and (secret_id == done.new_id or rotation_id == done.rotation_id):
            return None, "already_confirmed", f"rotation {done.rotation_id} already completed"
        return (
            None,
            "not_awaiting",
            f"target {record.target} is {record.phase.value}, not awaiting rollout",
        )
    if not names_it:
        return (
            None,
            "wrong_secret",
            f"the secret awaiting rollout is {record.pending_id} (rotation {record.rotation_id})",
        )
    if policy.confirmation == "grace":
        return None, "policy_refuses", f"target {record.target} waits for its grace period only"
    if record.confirmed_at is not None:
        return None, "already_confirmed", f"already confirmed ({record.confirmed_by})"
    confirmed = record.evolve(confirmed_at=now, confirmed_by=via)
    return confirmed, "confirmed", f"rollout of {record.pending_id} confirmed"


def backoff_for(attempts: int) -> timedelta:
    """The wait after ``attempts`` consecutive failures."""
    doublings = min(max(0, attempts - 1), 20)
    return min(BACKOFF_CAP, BACKOFF_BASE * (1 << doublings))
