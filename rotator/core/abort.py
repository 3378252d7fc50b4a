"""Backing out of a rotation: ``rotator abort``, as pure rules and the transitions they choose.

``rotator abort`` records an ``Abort`` in the target's record (check-and-set, like every write);
whichever process holds the lease next serves it in ``rotator.core.machine.step``, with a fresh
look at the consumers' path, so an action in flight when the operator asked (a create, a store)
has its result applied first and the decision sees where it left things. What serving does:

* in ``creating``, while the new secret was never stored (the consumers' path does not hold
  it, and it was not stored before and is waiting to be stored again): nothing reached
  consumers. Back to idle; a secret created for the rotation is deleted (one whose create
  answer was lost is an orphan under its recorded name, deleted once a list shows it).
* in ``awaiting_rollout`` (or ``creating`` with the new secret already stored): consumers may
  hold the new secret. The previous secret is written back (its material is the newest KV
  version of the consumers' path from before the store that holds the current id, checked
  against the fingerprint recorded when the rotation started); its rollout is awaited with the
  target's confirmation policy, consumers and all; only then is the abandoned secret deleted.
  The machine does that as an ordinary rotation with the roles swapped (``restoring``), so every
  delete passes the same safety rules.
* in ``retiring`` or later: refused, since Intercom may already have deleted the old secret and
  has no undelete. Refused too: an emergency, or an emergency ``rotate-now`` waiting or asked
  with it (the old secret counts as leaked), an adoption (no material of rotator's to restore),
  a back-out already under way, a restore whose KV version is gone (or, for a rotation started
  without a recorded fingerprint, is not the version right before the store), and a consumers'
  path someone has since written another secret to (never overwritten).

A refusal found when the request is served (the rotation moved on in between) drops the request
and says why; the rotation carries on untouched.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from rotator.core.observation import ConsumerView, KVHistory, Observation, PreviousSecret
from rotator.core.record import HISTORY_LIMIT, Abort, HistoryEntry, Phase, Record, Restoring
from rotator.core.safety import holds_pending, live_ids
from rotator.core.transitions import rested, unblocked
from rotator.redaction import SecretValue


def refusal(record: Record | None, rotation_id: str | None = None) -> str | None:
    """Why an abort of the rotation under way (of ``rotation_id``, when named) cannot be
    served; ``None`` when it can be recorded. The KV history is checked where it is read."""
    if record is None or not record.rotating:
        return "no rotation is under way"
    if rotation_id is not None and rotation_id != record.rotation_id:
        return f"rotation {rotation_id} is no longer under way (rotation {record.rotation_id} is)"
    phase = record.resume_phase if record.phase is Phase.BLOCKED else record.phase
    if record.restoring is not None:
        return f"rotation {record.restoring.rotation_id} is already being backed out"
    if phase is Phase.RETIRING and record.pending_id is None:
        last = record.history[-1] if record.history else None
        ours = last is not None and last.rotation_id == record.rotation_id
        if ours and last is not None and last.outcome == "aborted":
            return (
                f"rotation {record.rotation_id} is already aborted: the secret created for it is "
                "being deleted"
            )
        return "no rotation is under way (secrets that never reached consumers are being deleted)"
    if phase is Phase.RETIRING:
        return (
            f"rotation {record.rotation_id} is retiring: the old secret may already be deleted "
            "at Intercom, which has no undelete. Let it finish, then rotate again if needed"
        )
    if record.adoption:
        return (
            f"rotation {record.rotation_id} adopts secret {record.pending_id}, written to the "
            "consumers' path outside rotator: there is no material of rotator's to restore. "
            "Write the secret you want back to the path; rotator adopts or blocks on it"
        )
    if record.emergency:
        return (
            f"rotation {record.rotation_id} is an emergency: its old secret counts as leaked, "
            "and an abort would put it back"
        )
    asked = record.request
    if asked is not None and asked.emergency and asked.leaked == record.current_id:
        return (
            f"an emergency rotate-now by {asked.by} waits: secret {record.current_id} counts "
            "as leaked, and an abort would put it back"
        )
    return None


def serve(record: Record, obs: Observation, now: datetime) -> tuple[Record, str]:
    """The record once the waiting abort is served (refused, done, or started), and why."""
    request = record.abort
    if request is None:  # pragma: no cover - the machine asks only with one waiting
        return record, "no abort waits"
    problem = refusal(record, request.rotation_id)
    if problem is None and obs.command is not None and obs.command.emergency:
        problem = "an emergency rotate-now was asked: the old secret counts as leaked"
    if problem is not None:
        return abort_dropped(record), f"abort refused: {problem}"
    asked = record
    if record.phase is Phase.BLOCKED:
        record = unblocked(record)
    what = f"rotation {record.rotation_id} aborted by {request.by} ({request.reason})"
    if record.phase is Phase.CREATING and not reached(record, obs.consumer, obs.history):
        if record.pending_id is None:
            return aborted(record, request, now=now, abandoned=None), f"{what}: nothing created"
        why = f"{what}: deleting secret {record.pending_id}, which never reached consumers"
        return aborted(record, request, now=now, abandoned=record.pending_id), why
    return _restore(asked, record, obs, now, what)


def _restore(
    asked: Record, record: Record, obs: Observation, now: datetime, what: str
) -> tuple[Record, str]:
    """The back-out of a rotation whose new secret may have reached consumers: the previous
    secret stored again, if it can be trusted (``asked``: the record as it waits, unblocked
    into ``record``)."""
    request = asked.abort
    assert request is not None  # noqa: S101 - serve calls this with the abort waiting
    held = obs.consumer.intercom_id
    if held is not None and held not in {record.pending_id, record.current_id}:
        # Someone put another secret there since: consumers may use it. Not overwritten; the
        # rotation blocks on it as it would without the abort.
        return abort_dropped(record), (
            f"abort refused: the consumers' Vault path holds secret {held}, neither "
            f"{record.pending_id} nor {record.current_id}: someone changed it. Nothing was "
            "written over it"
        )
    if obs.intercom is None:
        return asked, f"abort of {request.rotation_id} waits for a pass that lists Intercom"
    if record.current_id not in live_ids(obs):
        return abort_dropped(record), (
            f"abort refused: Intercom does not list secret {record.current_id} (deleted "
            "outside rotator?): writing it back would hand consumers a dead key. Nothing was "
            "written; the rotation carries on"
        )
    found = restorable(record, obs.history)
    if isinstance(found, str):
        return abort_dropped(record), f"abort refused: {found}"
    restored = restoring(
        record,
        request,
        secret=found.secret,
        name=found.name,
        created_at=found.created_at,
        now=now,
    )
    why = (
        f"{what}: storing secret {record.current_id} back (consumers' path version "
        f"{found.version}); {record.pending_id} is deleted once it is rolled out"
    )
    return restored, why


def reached(record: Record, consumer: ConsumerView, history: KVHistory | None) -> bool:
    """Whether consumers may hold the new secret: the path holds it now, or it was stored
    once (``stored_version``), even if the path was changed since and it waits to be stored
    again (``transitions.store_again``), or one of the path's recent versions held it (a store
    that landed, then a Vault restore or a hand edit undid it before the record knew): a
    consumer may have read it in between. Without a look at the path's history, it may have."""
    if record.pending_id is None:
        return False
    if holds_pending(record, consumer) or record.stored_version is not None:
        return True
    return history is None or history.pending_seen


def restorable(record: Record, history: KVHistory | None) -> PreviousSecret | str:
    """The KV version to write back, or why there is none to trust."""
    if history is None:  # pragma: no cover - the reconciler reads it whenever an abort waits
        return "this pass did not read the consumers' path's history"
    found = history.found
    if found is None or found.intercom_id != record.current_id:
        return (
            f"the consumers' path's KV history no longer holds secret {record.current_id} "
            f"(no version below {history.below} has it: deleted, destroyed, or past "
            "max_versions). Nothing was changed; the rotation carries on"
        )
    expected = record.current_fingerprint
    if expected is None and found.version != history.below - 1:
        # Started by a rotator that recorded no fingerprint: only the version right before
        # the store is what consumers had; an older one may hold other material (a hand edit
        # fixed since, the version between soft-deleted).
        return (
            f"rotation {record.rotation_id} recorded no fingerprint of secret "
            f"{record.current_id}, and the version right before its store ({history.below - 1}) "
            f"does not hold it (version {found.version} does, perhaps with other material). "
            "Nothing was changed; the rotation carries on"
        )
    if expected is not None and found.fingerprint != expected:
        return (
            f"KV version {found.version} of the consumers' path names secret "
            f"{record.current_id} but holds other material than consumers had when the "
            "rotation started. Nothing was changed; the rotation carries on"
        )
    return found


# --- the transitions of an abort ----------------------------------------------------------------

#: What the back-out of rotation ``r1a2b`` is called while it runs (``r1a2b-back``): the id
#: consumers read at their path with the restored secret, and confirm by.
BACK_OUT_SUFFIX = "-back"


def abort_requested(record: Record, request: Abort) -> Record:
    """An operator's ``rotator abort``, recorded for whichever process holds the lease next."""
    return replace(record, abort=request)


def abort_dropped(record: Record) -> Record:
    """The abort request is served (refused, or nothing was left to abort): off the record."""
    return replace(record, abort=None)


def aborted(record: Record, request: Abort, *, now: datetime, abandoned: str | None) -> Record:
    """creating -> idle: nothing reached consumers. ``abandoned`` (a secret created whose
    material never reached the consumers' path) is deleted next, as an orphan would be: it is no
    longer a known id. The schedule counts from the aborted rotation's start, so the next one
    does not start at once."""
    entry = HistoryEntry(
        rotation_id=record.rotation_id or "?",
        generation=record.generation,
        new_id="",
        retired_ids=(),
        started_at=record.started_at or now,
        stored_at=None,
        confirmed_at=None,
        confirmed_by=None,
        finished_at=now,
        outcome="aborted",
        by=request.by,
        reason=request.reason,
    )
    rest = replace(
        rested(record),
        abort=None,
        known_ids=tuple(i for i in record.known_ids if i != abandoned),
        last_rotation_at=record.started_at or now,
        history=(*record.history, entry)[-HISTORY_LIMIT:],
    )
    if abandoned is None:
        return rest
    return replace(rest, phase=Phase.RETIRING, old_ids=(abandoned,))


def restoring(
    record: Record,
    request: Abort,
    *,
    secret: SecretValue,
    name: str | None,
    created_at: int | None,
    now: datetime,
) -> Record:
    """awaiting_rollout -> creating, backwards: the secret consumers held before (``current_id``,
    whose material is ``secret``, read from the consumers' path's KV history) becomes the one
    to store and roll out, and the abandoned new one becomes the secret it replaces, deleted
    only once that rollout is done. Every confirmation so far is void: it was of the other
    secret. The restore gets a rotation id of its own (``BACK_OUT_SUFFIX``): the aborted one
    names the abandoned secret, at the consumers' path with it, so a confirmation naming it
    (late, or from a consumer still on that secret) must not confirm the restore."""
    abandoned = record.pending_id
    aborted_id = record.rotation_id or "?"
    return replace(
        _rollout_cleared(record),
        phase=Phase.CREATING,
        rotation_id=f"{aborted_id}{BACK_OUT_SUFFIX}",
        pending_id=record.current_id,
        pending_secret=secret,
        pending_created_at=created_at,
        planned_name=name,
        current_id=abandoned,
        old_ids=(),
        emergency=False,
        abort=None,
        restoring=Restoring(
            rotation_id=aborted_id,
            by=request.by,
            at=now,
            reason=request.reason,
            abandoned_id=abandoned,
        ),
    )


def _rollout_cleared(record: Record) -> Record:
    """Whatever says how far the rollout of the stored secret went, cleared."""
    return replace(
        record,
        stored_at=None,
        stored_version=None,
        deadline=None,
        confirmed_at=None,
        confirmed_by=None,
        pending_absent_since=None,
        rollout=(),
        stalled_at=None,
        blocked_reason=None,
        resume_phase=None,
        retry_at=None,
        attempts=0,
        last_error=None,
        missing_scope=None,
    )
