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
1. Nothing consumers may use is deleted unless the consumers' path holds the newer secret (read
   back, same fingerprint), it is live at Intercom, and it was confirmed, its grace elapsed, or
   the rotation is an emergency (``rotator.core.safety.unsafe_to_delete``, before every delete).
2. Only what this target created (names recorded before the POST), adopted, or held as current
   is ever deleted; never the consumers' secret, never the last one. A secret someone else put
   at the consumers' path blocks the target instead of being guessed about.
3. Every decision with an action carries the record to persist first. A secret under a recorded
   name whose material never reached Vault is an orphan: deleted, then a fresh create under a
   new name. A lost DELETE is repeated; 404 is done.
4. Only the holder of the lease decides anything; the reconciler's check-and-set is the fence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from rotator.core.adoption import over_live
from rotator.core.observation import (
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
from rotator.core.record import HistoryEntry, Lease, Phase, Record
from rotator.core.safety import live_ids, orphans, unsafe_to_delete

BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_CAP = timedelta(hours=1)
#: The longest wait a server may ask for (a Retry-After in milliseconds would be years).
LONGEST_DELAY = timedelta(days=1)
#: Plausible Unix seconds for a secret's created_at (milliseconds are refused, not believed).
_TIMESTAMPS = range(1_000_000_000, 10_000_000_000)


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
    created = consumer.created_at
    if created is not None and created in _TIMESTAMPS:
        last: datetime | None = datetime.fromtimestamp(created, tz=now.tzinfo)
    else:
        last = now if consumer.intercom_id else None
    held = (consumer.intercom_id,) if consumer.intercom_id else ()
    return Record(
        target=policy.target, current_id=consumer.intercom_id, last_rotation_at=last, known_ids=held
    )


# --- the step -----------------------------------------------------------------------------------


def step(record: Record, obs: Observation, now: datetime) -> Decision:
    """Decide what to do next for one target. Pure: same inputs, same decision."""
    if not obs.lease_free:
        # Whatever this process saw (even a failure), the holder decides.
        holder = record.lease.holder if record.lease else "another process"
        return Decision(record, None, f"waiting: {holder} holds the lease", held_off=True)
    if obs.result is not None:
        return _settle(_apply_result(record, obs, now), obs)
    if record.phase is Phase.BLOCKED:
        if not isinstance(obs.command, RotateNow):
            return _rest(record, f"blocked: {record.blocked_reason}")
        record = _resume(record)
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
    return _settle(_HANDLERS[record.phase](record, obs, now), obs)


def _resume(record: Record) -> Record:
    # A rotation blocked while awaiting rollout re-checks from "creating": its material is still
    # in the record, so it is stored again (or replaced if Intercom lost it).
    phase = record.resume_phase or Phase.IDLE
    if phase is Phase.AWAITING_ROLLOUT:
        phase = Phase.CREATING
    return record.evolve(
        phase=phase, blocked_reason=None, resume_phase=None, attempts=0, retry_at=None
    )


def _settle(decision: Decision, obs: Observation) -> Decision:
    """Attach or drop the lease: held while acting, released when resting."""
    record = decision.record
    if decision.action is None:
        return Decision(record.evolve(lease=None), None, decision.reason)
    serial = f"{record.phase.value}.{len(record.old_ids)}.{record.pending_id or '-'}"
    nonce = f"{obs.fresh[-8:]}{record.generation}-{serial}"  # changes with every write
    lease = Lease(holder=obs.me, nonce=nonce, ttl=obs.policy.lease_ttl)
    return Decision(record.evolve(lease=lease), decision.action, decision.reason)


def _rest(record: Record, reason: str) -> Decision:
    return Decision(record, None, reason)


# --- phases -----------------------------------------------------------------------------------


def _idle(record: Record, obs: Observation, now: datetime) -> Decision:
    wanted = isinstance(obs.command, RotateNow) or obs.due
    if obs.intercom is None:
        return _rest(
            record, "idle: due, but Intercom was not listed" if wanted else "idle: not due"
        )
    drift = _drift(record, obs, now)
    if drift is not None:
        return drift
    found = orphans(record, obs)
    if found:
        swept = record.evolve(phase=Phase.RETIRING, old_ids=found)
        return Decision(
            swept, Delete(found[0]), f"deleting {len(found)} orphaned secret(s) it created"
        )
    if not wanted and obs.consumer.intercom_id is not None:
        return _rest(record, "idle: not due")
    rotation_id = f"r{obs.fresh[:12]}"
    started = record.evolve(
        phase=Phase.CREATING,
        generation=record.generation + 1,
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


def _drift(record: Record, obs: Observation, now: datetime) -> Decision | None:
    """The consumers' path holds something other than the current secret: adopt or refuse."""
    held = obs.consumer.intercom_id
    if held is None or held == record.current_id:
        return None
    if held not in live_ids(obs):
        return None  # a dead secret at the consumers' path: the rotation replaces it (due)
    if held not in obs.policy.adopt and held not in record.known_ids:
        if isinstance(obs.command, RotateNow):
            return None  # the operator asked: provision a new secret, leave that one alone
        return _block(
            record,
            f"the consumers' Vault path holds secret {held}, which this target neither created "
            f"nor adopts (its current secret is {record.current_id}). Restore it, list {held} "
            "under adopt, or run rotate-now to provision a new secret.",
        )
    if record.current_id is None or record.current_id not in live_ids(obs):
        adopted = record.evolve(current_id=held, known_ids=record.remember_id(held))
        return _rest(adopted, f"adopted secret {held} from the consumers' path")
    adopting = over_live(record, held, now, obs.policy.grace_period, obs.fresh)
    return _rest(adopting, f"adopted secret {held}; retiring {record.current_id} after the grace")


def _creating(record: Record, obs: Observation, now: datetime) -> Decision:
    if obs.intercom is None:
        return _rest(record, "creating: Intercom was not listed")
    if record.pending_id is None:
        found = orphans(record, obs)
        if found:
            marked = record.evolve(old_ids=tuple(dict.fromkeys((*record.old_ids, *found))))
            return Decision(
                marked,
                Delete(found[0]),
                f"secret {found[0]} was created but its material never reached Vault: "
                "deleting the orphan before creating a fresh one",
            )
        return _create(record, obs, "creating the new secret")
    if record.pending_id not in live_ids(obs):
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
        known_ids=record.remember_id(record.pending_id or ""),
    )
    if record.current_id is None or record.current_id == record.pending_id:
        return _retire(stored, obs, now, "nothing to retire")
    decision = _awaiting(stored, obs, now)
    if decision.action is None and decision.record.phase is Phase.AWAITING_ROLLOUT:
        return _rest(decision.record, f"stored secret {record.pending_id}; awaiting rollout")
    return decision


def _awaiting(record: Record, obs: Observation, now: datetime) -> Decision:
    secret = record.pending_secret
    if obs.consumer.intercom_id != record.pending_id or (
        secret is not None and obs.consumer.fingerprint != secret.fingerprint()
    ):
        return _block(
            record,
            f"the consumers' Vault path no longer holds the new secret {record.pending_id}; "
            "someone changed it during the rotation. Check it, then run rotate-now to store "
            "the new secret again.",
        )
    if obs.intercom is not None and record.pending_id not in live_ids(obs):
        return _block(
            record,
            f"the new secret {record.pending_id} was deleted at Intercom while consumers use it; "
            "run rotate-now to provision a replacement",
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
        olds += orphans(record, obs)
    retiring = record.evolve(
        phase=Phase.RETIRING, old_ids=tuple(dict.fromkeys((*record.old_ids, *olds)))
    )
    return _retiring(retiring, obs, now, reason)


def _retiring(record: Record, obs: Observation, now: datetime, reason: str = "") -> Decision:
    if obs.intercom is None:
        return _rest(record, "retiring: Intercom was not listed")
    live = live_ids(obs)
    remaining = tuple(i for i in record.old_ids if i in live)
    if remaining != record.old_ids:
        record = record.evolve(old_ids=remaining)  # already gone: no call needed
    if not remaining:
        return _complete(record, obs, now)
    target_id = remaining[0]
    problem = unsafe_to_delete(record, obs, target_id)
    if problem:
        return _block(record, f"refusing to delete secret {target_id}: {problem}")
    return Decision(record, Delete(target_id), reason or f"retiring secret {target_id}")


def _complete(record: Record, obs: Observation, now: datetime) -> Decision:
    if record.pending_id is None:
        # A sweep of orphans, not a rotation: carry on with whatever was asked or is due.
        return _idle(record.evolve(phase=Phase.IDLE, old_ids=()), obs, now)
    entry = HistoryEntry(
        rotation_id=record.rotation_id or "?",
        generation=record.generation,
        new_id=record.pending_id,
        retired_ids=tuple(i for i in (record.current_id,) if i and i != record.pending_id),
        started_at=record.started_at or now,
        stored_at=record.stored_at,
        confirmed_at=record.confirmed_at,
        confirmed_by=record.confirmed_by,
        finished_at=now,
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
        last_rotation_at=record.started_at or now,
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
    healthy = record.evolve(attempts=0, retry_at=None, last_error=None)
    if isinstance(result, Created):
        if record.phase is not Phase.CREATING or result.name != record.planned_name:
            return _rest(record, "ignored a create result that is not this rotation's")
        created = healthy.evolve(
            pending_id=result.secret_id,
            pending_secret=result.secret,
            pending_created_at=result.created_at,
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
            failed = Failed("read-back of the consumers' path did not match", permanent=False)
            return _fail(record, failed, now)
        return _stored(healthy, obs, now)
    assert isinstance(result, Deleted)  # noqa: S101 - Result is a closed union
    left = healthy.evolve(old_ids=tuple(i for i in record.old_ids if i != result.secret_id))
    # Carry on in the same pass: the next delete, completion, or the create after an orphan.
    return _HANDLERS[left.phase](left, replace(obs, result=None), now)


def _fail(record: Record, failure: Failed, now: datetime) -> Decision:
    if failure.permanent:
        return _block(record, failure.message)
    attempts = record.attempts + 1
    wait = backoff_for(attempts)
    if failure.delay is not None:
        wait = max(wait, min(LONGEST_DELAY, timedelta(seconds=max(0.0, failure.delay))))
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


def _create(record: Record, obs: Observation, reason: str) -> Decision:
    # A fresh name for every attempt, recorded before the POST: a late answer to an earlier
    # attempt can then never be mistaken for this one, and every name stays recognisable.
    name = f"{obs.policy.secret_name} · rotator g{record.generation} {obs.fresh[-6:]}"
    planned = record.evolve(planned_name=name, owned_names=record.remember_name(name))
    return Decision(planned, Create(name), reason)


def backoff_for(attempts: int) -> timedelta:
    """The wait after ``attempts`` consecutive failures."""
    doublings = min(max(0, attempts - 1), 20)
    return min(BACKOFF_CAP, BACKOFF_BASE * (1 << doublings))
