"""The rotation state machine: a pure function from (record, observation, now) to a decision.

Theory of operation
-------------------
A *pass* gathers the world into one ``Observation`` (the target's record, what the consumers'
Vault path holds, Intercom's live secrets when needed, whether the schedule says "due", an
operator's command, and the result of the action just taken). ``step`` turns it into a
``Decision``: the record to persist, at most one ``Action`` to take *after* that write succeeds,
and a reason that logs, ``status`` and metrics reuse. The reconciler persists, acts, feeds the
result back in, and repeats until a decision has no action. Nothing here performs I/O or reads a
clock: ``now`` is Vault's time, the one clock every process shares; fresh randomness (rotation
ids, name suffixes) arrives in the observation. Every change to the record is a named
transition of ``rotator.core.transitions``.

    idle ──due / rotate-now──▶ creating ──created, in Vault, read back──▶ awaiting_rollout
      ▲                                                                │ confirmed for THIS
      └───────── every old secret deleted ◀── retiring ◀───────────────┘ store, or grace

The rules of PRODUCT.md, as this module keeps them:
1. Nothing consumers may use is deleted unless the consumers' path holds the newer secret (read
   back, same fingerprint) and its rollout is done: confirmed after its latest store, its grace
   elapsed on Vault's clock, or an emergency (``safety.unsafe_to_delete``, before every delete).
2. Only what this target created (names recorded before the POST), adopted, or held as current
   is ever deleted; never the consumers' secret, never the last one. A secret someone else put
   at the consumers' path blocks the target instead of being guessed about.
3. Every decision with an action carries the record to persist first, and so does every
   operator request (``record.request``), served by whichever process passes next. A secret
   under a recorded name whose material never reached Vault is an orphan: deleted, then a fresh
   create under a new name. Material that reached Vault is known from its commit point.
4. A secret is retired only when Intercom says so for that id: every old secret gets its DELETE
   (204, or Intercom's own 404, is done; a lost answer is asked again). A list that omits a
   secret proves nothing, since lists lag behind creates and deletes.
5. Only the holder of the lease decides anything; the reconciler's check-and-set is the fence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from rotator.core import abort, adoption, audit, pause, rollout, windows
from rotator.core import operator_requests as requests
from rotator.core import transitions as t
from rotator.core.absence import unlisted_since_long_stored, watch_consumer, watch_pending
from rotator.core.failure import failed
from rotator.core.observation import (
    LIST_LAG_TOLERANCE,
    Create,
    Created,
    CreateUnknown,
    Decision,
    Delete,
    Deleted,
    Failed,
    Observation,
    Store,
    Stored,
)
from rotator.core.record import Lease, Phase, Record
from rotator.core.safety import (
    as_stored,
    holds_pending,
    live_ids,
    orphans,
    owned,
    rolled_out,
    rollout_done,
    unsafe_to_delete,
)

Handler = Callable[[Record, Observation, datetime], Decision]


# --- the step -----------------------------------------------------------------------------------


def step(record: Record, obs: Observation, now: datetime) -> Decision:
    """Decide what to do next for one target. Pure: same inputs, same decision. Whatever the
    decision changes in the record is noted in its audit trail (``rotator.core.audit``)."""
    decision = _decide(record, obs, now)
    if decision.record == record:
        return decision
    after = audit.noted(record, decision.record, at=now, why=decision.reason, via=obs.me, by=None)
    return replace(decision, record=after)


def _decide(record: Record, obs: Observation, now: datetime) -> Decision:
    if not obs.lease_free:
        # Whatever this process saw (even a failure), the holder decides.
        holder = record.lease.holder if record.lease else "another process"
        return Decision(record, None, f"waiting: {holder} holds the lease", held_off=True)
    if obs.result is not None:
        # Paused after this action was decided: its result still counts, its sequel waits.
        return _settle(pause.hold(_apply_result(record, obs, now)), obs)
    paused = pause.rest(record)
    if paused is not None:
        return _settle(paused, obs)
    if record.abort is not None:
        return _aborting(record, obs, now)  # an operator's command, served first
    asked = obs.command is not None or record.request is not None
    if record.phase is Phase.BLOCKED:
        unblocked = requests.unblocked(record, obs) if asked else None
        if unblocked is None:
            return _settle(_rest(record, record.blocked_reason or "blocked"), obs)
        record = unblocked
    elif record.retry_at is not None and now < record.retry_at and obs.command is None:
        why = f"backing off until {record.retry_at.isoformat()}: {record.last_error}"
        return _settle(_rest(record, why), obs)
    if record.rotating:
        record = requests.joined(record, obs)
    decision = _HANDLERS[record.phase](record, obs, now)
    if decision.action is None and decision.record.phase is not Phase.BLOCKED:
        # A whole pass without a failure: whatever failed before no longer stands in the way.
        decision = replace(decision, record=t.healthy(decision.record))
    return _settle(decision, obs)


def _aborting(record: Record, obs: Observation, now: datetime) -> Decision:
    """The waiting abort served (``rotator.core.abort``), then the step it leads to."""
    served, why = abort.serve(record, obs, now)
    if served.abort is not None:
        return _settle(_rest(served, why), obs)  # it waits for what this pass lacks
    decision = _decide(served, obs, now)
    return replace(decision, reason=f"{why}; {decision.reason}")


def _settle(decision: Decision, obs: Observation) -> Decision:
    """Attach or drop the lease (held while acting, released when resting), and stamp the
    workspace the record now belongs to."""
    record = decision.record
    if obs.binding is not None and record.binding != obs.binding:
        record = replace(record, binding=obs.binding)
    if decision.action is None:
        lease = None
    else:
        serial = f"{record.phase.value}.{len(record.old_ids)}.{record.pending_id or '-'}"
        nonce = f"{obs.fresh[-8:]}{record.generation}-{serial}"  # changes with every write
        lease = Lease(holder=obs.me, nonce=nonce, ttl=obs.policy.lease_ttl)
    return replace(decision, record=replace(record, lease=lease))


def _rest(record: Record, reason: str) -> Decision:
    return Decision(record, None, reason)


# --- phases -----------------------------------------------------------------------------------


def _idle(record: Record, obs: Observation, now: datetime) -> Decision:
    asked = obs.command is not None or record.request is not None
    if obs.intercom is None:
        held = windows.holds_start(obs.window, scheduled=obs.consumer.intercom_id is not None)
        if obs.due and not asked and held:
            return _rest(record, held)  # the pass did not list Intercom for a start that waits
        wanted = asked or obs.due
        return _rest(record, "due, but Intercom was not listed" if wanted else "not due")
    record, vanished = watch_consumer(record, obs, now)
    if not asked:
        drift = adoption.drift(record, obs, now)
        if drift is not None:
            return drift
    found = orphans(record, obs)
    if found:
        sweep = t.retiring(record, found)
        return _delete(sweep, obs, now, found[0], f"deleting {len(found)} orphaned secret(s)")
    if not (asked or obs.due or vanished) and obs.consumer.intercom_id is not None:
        return _rest(record, "not due")
    scheduled = not (asked or vanished or obs.consumer.intercom_id is None)
    held = windows.holds_start(obs.window, scheduled=scheduled)
    if held:
        return _rest(record, held)
    emergency = (obs.command is not None and obs.command.emergency) or requests.leaked(record)
    rotation_id = f"r{obs.fresh[:12]}"
    held_now = obs.consumer.fingerprint if obs.consumer.intercom_id == record.current_id else None
    started = t.start_rotation(
        record,
        rotation_id=rotation_id,
        now=now,
        emergency=emergency,
        current_fingerprint=held_now,
    )
    why = "rotate-now" if asked else "consumers' secret gone" if vanished else "schedule due"
    return _create(started, obs, f"rotation {rotation_id} started ({why})")


def _creating(record: Record, obs: Observation, now: datetime) -> Decision:
    if record.pending_id is None:
        if obs.intercom is None:
            return _rest(record, "creating: Intercom was not listed")
        found = orphans(record, obs)
        if found:
            marked = replace(record, old_ids=tuple(dict.fromkeys((*record.old_ids, *found))))
            return _delete(
                marked,
                obs,
                now,
                found[0],
                f"secret {found[0]} was created but its material never reached Vault: "
                "deleting the orphan before creating a fresh one",
            )
        return _create(record, obs, "creating the new secret")
    if record.pending_secret is None:
        return _block(
            record,
            f"the record names new secret {record.pending_id} but holds no material to store; "
            "it was edited by hand or damaged: restore it (kv rollback), or adopt a secret",
        )
    # A secret whose material is committed is never judged gone on a list: it is stored.
    if holds_pending(record, obs.consumer):
        return _stored(record, obs, now)
    why = f"storing secret {record.pending_id} in Vault"
    return Decision(record, Store(cas=obs.consumer.version), why)


def _stored(record: Record, obs: Observation, now: datetime) -> Decision:
    # ``now`` is Vault's time, and never earlier than the store: the store's own answer (and
    # the read-back's) told the clock the version's created_time.
    stored = t.stored(record, at=now, grace=obs.policy.grace_period, version=obs.consumer.version)
    if record.current_id is None or record.current_id == record.pending_id:
        return _retire(stored, obs, now, "nothing to retire")
    decision = _awaiting(stored, obs, now)
    if decision.action is None and decision.record.phase is Phase.AWAITING_ROLLOUT:
        return _rest(decision.record, f"stored secret {record.pending_id}; awaiting rollout")
    return decision


def _awaiting(record: Record, obs: Observation, now: datetime) -> Decision:
    if not holds_pending(record, obs.consumer):
        if record.adoption and (obs.command is not None or record.request is not None):
            # An operator asked to move on from an adoption whose secret consumers no longer
            # hold: drop it (the adopted secret stays known, the next rotation retires it).
            return _idle(t.rested(record), obs, now)
        return _block(
            record,
            f"the consumers' Vault path no longer holds the new secret {record.pending_id}; "
            "someone changed it during the rotation. Check it, then run rotate-now to store "
            "the new secret again.",
        )
    if not as_stored(record, obs.consumer):
        # Someone wrote the same secret there again: a new store, whose rollout starts now.
        return _stored(record, obs, now)
    record, missing = watch_pending(record, obs, now)
    if missing:
        return _block(
            record,
            f"Intercom has not listed the new secret {record.pending_id} for "
            f"{int(LIST_LAG_TOLERANCE.total_seconds() // 60)} minutes while consumers use it: "
            "was it deleted outside rotator? Check the secrets at Intercom, then run rotate-now.",
        )
    record = rollout.observe(record, obs, now)
    done = rollout_done(record, obs.policy, now)
    if done is None:
        return _waiting(record, obs, now)
    unseen = () if record.emergency else rollout.unseen(record, obs)
    if unseen:
        why = f"{done}, but this pass has no probe round of {', '.join(unseen)}"
        return _rest(record, f"{why}: retiring after a round that still sees the new secret")
    if unlisted_since_long_stored(record, obs, now):
        # Old enough to be listed by now: its absence may mean it is gone, and the old secret
        # may be the last live one. Retire only once a list shows it (or block, above).
        why = f"{done}, but Intercom's list does not show the new secret {record.pending_id}"
        return _rest(record, f"{why}: waiting for it to be listed before retiring the old one")
    if record.confirmed_at is None and not record.emergency:
        record = t.confirmed(record, at=now, by=rollout.retired_by(record, obs.policy))
    held = windows.holds_retirement(record, obs.window)
    if held:
        return _rest(record, f"{done}, but {held}: the old secret is retired then")
    return _retire(record, obs, now, done)


def _waiting(record: Record, obs: Observation, now: datetime) -> Decision:
    """The rollout is not done: say what it waits for."""
    if obs.policy.consumers:
        return _rest(*rollout.waiting(record, obs.policy, now))
    if rollout.verified(record):
        return _rest(record, rollout.unnamed(record))
    waits_for = {"hook": "the confirmation hook", "grace": "the grace deadline"}.get(
        obs.policy.confirmation, "the confirmation hook or the grace deadline"
    )
    return _rest(record, f"awaiting rollout of {record.pending_id}: waiting for {waits_for}")


def _retire(record: Record, obs: Observation, now: datetime, reason: str) -> Decision:
    keeper = record.pending_id
    olds = [record.current_id] if record.current_id and record.current_id != keeper else []
    if obs.intercom is not None:
        # Strays go with the old secret: orphans, and (once consumers are all on the new one,
        # not merely in an emergency) secrets this target knows that a list still shows, an
        # abandoned adoption's, say. Their DELETEs say whether they were still there.
        if rolled_out(record, obs.policy, now) is not None:
            listed = live_ids(obs)
            olds += [i for i in record.known_ids if i in listed and i != keeper]
        olds += orphans(record, obs)
    ids = tuple(i for i in dict.fromkeys(olds) if owned(record, obs, i))
    return _retiring(t.retiring(record, ids), obs, now, reason)


def _retiring(record: Record, obs: Observation, now: datetime, reason: str = "") -> Decision:
    pending = record.pending_id is not None and holds_pending(record, obs.consumer)
    if pending and not as_stored(record, obs.consumer):
        # Rewritten since the rollout was judged done: consumers may have seen something else
        # in between. The rollout of this store starts again.
        return _stored(record, obs, now)
    if not record.old_ids:
        return _complete(record, obs, now)
    target_id = record.old_ids[0]
    return _delete(record, obs, now, target_id, reason or f"retiring secret {target_id}")


def _delete(
    record: Record, obs: Observation, now: datetime, secret_id: str, reason: str
) -> Decision:
    """The one way to a ``Delete``: every delete passes the same safety check first."""
    problem = unsafe_to_delete(record, obs, secret_id, now)
    if problem:
        return _block(record, f"refusing to delete secret {secret_id}: {problem}")
    return Decision(record, Delete(secret_id), reason)


def _complete(record: Record, obs: Observation, now: datetime) -> Decision:
    if record.pending_id is None:
        # A sweep of orphans, not a rotation: carry on with whatever was asked or is due.
        return _idle(t.swept(record), obs, now)
    done = t.completed(record, now=now)
    return _rest(done, f"rotation {record.rotation_id} complete: {record.pending_id} is current")


def _blocked(record: Record, _obs: Observation, _now: datetime) -> Decision:  # pragma: no cover
    return _rest(record, record.blocked_reason or "blocked")


# The transition table: one handler per phase, each returning the next decision.
_HANDLERS: dict[Phase, Handler] = {
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
        return failed(record, result, now)
    if isinstance(result, Created):
        if record.phase is not Phase.CREATING or result.name != record.planned_name:
            return _rest(record, "ignored a create result that is not this rotation's")
        created = t.committed(
            t.healthy(record),
            secret_id=result.secret_id,
            secret=result.secret,
            created_at=result.created_at,
        )
        # Persisting this record is the commit point: the material is in Vault from now on.
        return Decision(
            created, Store(cas=obs.consumer.version), f"created secret {result.secret_id}"
        )
    if isinstance(result, CreateUnknown):
        return _rest(record, f"create outcome unknown ({result.message}); listing to find out")
    if isinstance(result, Stored):
        if record.pending_secret is None or not holds_pending(record, result.consumer):
            failure = Failed("read-back of the consumers' path did not match", permanent=False)
            return failed(record, failure, now)
        return _stored(t.healthy(record), obs, now)
    if not isinstance(result, Deleted):  # pragma: no cover - Result is a closed union
        raise TypeError(f"unknown result {type(result).__name__}")
    left = t.deleted(t.healthy(record), result.secret_id)
    # Carry on in the same pass: the next delete, completion, or the create after an orphan.
    return _HANDLERS[left.phase](left, replace(obs, result=None), now)


def _block(record: Record, reason: str) -> Decision:
    return _rest(t.blocked(record, reason), reason)


def _create(record: Record, obs: Observation, reason: str) -> Decision:
    # A fresh name for every attempt, recorded before the POST: a late answer to an earlier
    # attempt can then never be mistaken for this one, and every name stays recognisable.
    name = f"{obs.policy.secret_name} · rotator g{record.generation} {obs.fresh[-6:]}"
    return Decision(t.planned(record, name), Create(name), reason)
