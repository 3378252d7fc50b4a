"""The decision core of ``rotator abort`` (``rotator.core.abort`` through ``machine.step``), pure:
which phases can be backed out of and how, what a refusal leaves (the rotation untouched), that
the restore is an ordinary rollout whose only delete is of the abandoned secret and only once
that rollout is done, and that an abort waits for the lease holder and for a resume."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from test_machine import NEW_SECRET, NOW, OLD, awaiting, created, observe, started

from rotator.core import abort, machine, transitions
from rotator.core.observation import (
    ConsumerView,
    Delete,
    Deleted,
    KVHistory,
    LiveSecret,
    Observation,
    PreviousSecret,
    Store,
    Stored,
    absorb,
    needs_history,
)
from rotator.core.record import (
    ROLLOUT_SCHEMA_VERSION,
    SCHEMA_VERSION,
    Abort,
    Lease,
    NewerRecordError,
    Pause,
    Phase,
    Record,
)
from rotator.core.safety import unsafe_to_delete
from rotator.redaction import SecretValue

OLD_SECRET = SecretValue("old-material-0123456789abcdefghijklmnopq")
REQUEST_AT = NOW + timedelta(minutes=1)


#: The path's history as a pass reads it for an abort in creating: no recent version held 101.
NEVER_HELD = KVHistory(below=3, found=None, pending_seen=False)


def asked(record: Record, *, by: str = "alice@ops", reason: str = "bad deploy") -> Record:
    request = Abort(by=by, at=REQUEST_AT, reason=reason, rotation_id=record.rotation_id or "")
    return abort.abort_requested(record, request)


def history(fingerprint: str = "sha256:old", intercom_id: str = "100") -> KVHistory:
    found = PreviousSecret(
        version=3,
        intercom_id=intercom_id,
        secret=OLD_SECRET,
        fingerprint=fingerprint,
        name="Production Web",
        created_at=1_700_000_000,
    )
    return KVHistory(below=4, found=found)


def on_new(record: Record, **changes) -> Observation:
    """What a pass sees while the consumers' path holds the new secret, as stored."""
    view = ConsumerView(intercom_id="101", fingerprint=NEW_SECRET.fingerprint(), version=4)
    listed = (OLD, LiveSecret("101", record.planned_name or "x"))
    return observe(record, **{"consumer": view, "intercom": listed, **changes})


def test_awaiting_rollout_restores_the_previous_secret_and_retires_the_new_one_last():
    """The abort swaps the roles: the old secret is stored back (CAS on the path as it is),
    nothing is deleted before the restore's rollout is done (grace), then only the abandoned
    secret is deleted, and the history records an aborted rotation with who and why."""
    rec = asked(awaiting())
    decision = machine.step(rec, on_new(rec, history=history()), NOW + timedelta(minutes=2))
    assert decision.action == Store(cas=4)
    back = decision.record
    assert (back.pending_id, back.current_id, back.phase) == ("100", "101", Phase.CREATING)
    assert back.pending_secret == OLD_SECRET
    assert back.abort is None
    assert back.restoring is not None
    assert (back.restoring.by, back.restoring.abandoned_id) == ("alice@ops", "101")
    assert "aborted by alice@ops (bad deploy)" in decision.reason
    assert back.to_storage()["schema_version"] == SCHEMA_VERSION

    restored = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)
    at = NOW + timedelta(minutes=3)
    obs = on_new(back, consumer=restored)
    step = machine.step(back, absorb(obs, Stored(restored)), at)
    assert step.action is None
    assert step.record.phase is Phase.AWAITING_ROLLOUT
    waiting = step.record
    for later in (at + timedelta(minutes=1), at + timedelta(minutes=59)):  # grace: 1 hour
        assert machine.step(waiting, on_new(waiting, consumer=restored), later).action is None
    past = at + timedelta(hours=1, minutes=1)
    retire = machine.step(waiting, on_new(waiting, consumer=restored), past)
    assert retire.action == Delete("101")
    done = machine.step(
        retire.record,
        absorb(on_new(retire.record, consumer=restored), Deleted("101")),
        past,
    )
    rec = done.record
    assert (rec.phase, rec.current_id, rec.restoring) == (Phase.IDLE, "100", None)
    entry = rec.history[-1]
    assert (entry.outcome, entry.by, entry.reason, entry.new_id, entry.retired_ids) == (
        "aborted",
        "alice@ops",
        "bad deploy",
        "100",
        ("101",),
    )
    assert entry.rotation_id == awaiting().rotation_id
    assert rec.to_storage()["schema_version"] < SCHEMA_VERSION


def test_the_restore_never_deletes_the_secret_it_restores():
    """Safety of the restore: the old id is the keeper, so any delete of it is refused."""
    rec = asked(awaiting())
    back = machine.step(rec, on_new(rec, history=history()), NOW).record
    restored = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)
    obs = on_new(back, consumer=restored)
    assert unsafe_to_delete(back, obs, "100", NOW + timedelta(days=9)) is not None


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        (KVHistory(below=4, found=None), "no longer holds secret 100"),
        (history(intercom_id="99"), "no longer holds secret 100"),
        (history(fingerprint="sha256:other"), "holds other material"),
    ],
)
def test_a_restore_that_cannot_be_trusted_is_refused_and_the_rotation_carries_on(found, problem):
    """No KV version with the old id, or one whose material is not what consumers had: the
    request is dropped with the reason, and the rotation is exactly as it was."""
    before = awaiting()
    rec = asked(before)
    decision = machine.step(rec, on_new(rec, history=found), NOW)
    assert decision.action is None
    assert "abort refused" in decision.reason
    assert problem in decision.reason
    assert decision.record.abort is None
    assert decision.record.restoring is None
    assert (decision.record.pending_id, decision.record.current_id) == ("101", "100")
    assert decision.record.phase is Phase.AWAITING_ROLLOUT


def test_creating_before_any_create_answer_ends_idle_with_an_aborted_history():
    """Nothing created yet (or its answer lost): idle, the schedule counted from the aborted
    start (not due again at once), the planned name kept so a late secret is an orphan."""
    rec, name = started()
    rec = asked(rec)
    decision = machine.step(rec, observe(rec, intercom=(OLD,)), NOW)
    out = decision.record
    assert (out.phase, out.current_id, out.pending_id) == (Phase.IDLE, "100", None)
    assert out.last_rotation_at == rec.started_at
    assert name in out.owned_names
    assert out.history[-1].outcome == "aborted"
    late = LiveSecret("102", name)
    sweep = machine.step(out, observe(out, intercom=(OLD, late)), NOW)
    assert sweep.action == Delete("102")


def test_creating_with_material_never_stored_deletes_the_new_secret_at_once():
    """Committed but not at the consumers' path: deleted (no rollout needed, it is no longer a
    known id), the consumers' secret untouched."""
    rec = asked(created())
    listed = (OLD, LiveSecret("101", rec.planned_name or ""))
    decision = machine.step(rec, observe(rec, intercom=listed, history=NEVER_HELD), NOW)
    assert decision.action == Delete("101")
    lagging = machine.step(rec, observe(rec, intercom=(OLD,), history=NEVER_HELD), NOW)
    assert lagging.action == Delete("101")  # a list that lags is no reason to keep it
    assert "101" not in decision.record.known_ids
    after = machine.step(
        decision.record, absorb(observe(decision.record), Deleted("101")), NOW
    ).record
    assert (after.phase, after.current_id, after.old_ids) == (Phase.IDLE, "100", ())
    assert after.history[-1].outcome == "aborted"


def test_creating_with_the_new_secret_already_at_the_path_restores_instead():
    """A store that landed before its result was recorded: consumers may hold the new secret,
    so it is backed out like a rollout, never deleted at once."""
    rec = asked(created())
    decision = machine.step(rec, on_new(rec, history=history()), NOW)
    assert decision.action == Store(cas=4)
    assert decision.record.restoring is not None
    assert "101" in decision.record.known_ids


def test_a_blocked_rollout_can_be_aborted():
    """Blocked while awaiting (someone changed the path, say): the abort restores."""
    rec = asked(transitions.blocked(awaiting(), "someone changed the path"))
    decision = machine.step(rec, on_new(rec, history=history()), NOW)
    assert decision.action == Store(cas=4)
    assert decision.record.phase is Phase.CREATING


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: transitions.retiring(awaiting(), ("100",)), "no undelete"),
        (lambda: replace(awaiting(), emergency=True), "emergency"),
        (lambda: replace(awaiting(), adoption=True), "adopts secret"),
        (lambda: Record(target="web", current_id="100"), "no rotation is under way"),
    ],
)
def test_refusals_name_why_and_change_nothing_else(make, words):
    """Retiring, an emergency, an adoption, idle: refused by ``refusal`` (what the CLI checks
    before writing) and, if recorded anyway, dropped when served with the rotation untouched."""
    rec = make()
    assert words in (abort.refusal(rec) or "")
    request = Abort(by="a", at=NOW, reason="r", rotation_id=rec.rotation_id or "")
    waiting = abort.abort_requested(rec, request)
    served, why = abort.serve(waiting, on_new(waiting, history=history()), NOW)
    assert served == rec
    assert words in why


def test_an_abort_of_another_rotation_is_dropped():
    """A request about a rotation that ended (a new one runs) does not abort the new one."""
    rec = awaiting()
    request = Abort(by="a", at=NOW, reason="r", rotation_id="r-earlier")
    served, why = abort.serve(abort.abort_requested(rec, request), on_new(rec), NOW)
    assert served == rec
    assert "no longer under way" in why


def test_an_abort_waits_for_the_lease_holder_and_for_a_resume():
    """Another process's live lease, or a pause: nothing is served, the request stays."""
    rec = asked(awaiting())
    held = replace(rec, lease=Lease(holder="other", nonce="n", ttl=60))
    decision = machine.step(held, on_new(held, history=history(), lease_free=False), NOW)
    assert decision.record.abort is not None
    assert decision.action is None
    paused = transitions.paused(rec, Pause(by="bob", at=NOW, reason="freeze"))
    decision = machine.step(paused, on_new(paused, history=history()), NOW)
    assert decision.record.abort is not None
    assert decision.action is None


def test_history_is_read_only_while_an_abort_of_a_created_secret_waits():
    """``needs_history``: below the stored version (or the path's latest if unknown)."""
    assert needs_history(awaiting()) is None
    assert needs_history(asked(awaiting())) == awaiting().stored_version
    assert needs_history(asked(created())) == 0
    assert needs_history(asked(started()[0])) is None


def test_schema_4_while_an_abort_is_in_the_record_and_older_readers_refuse(monkeypatch):
    """A record with an abort waiting reads back equal, is written as schema 4, and a rotator
    that reads up to schema 3 refuses it (it would finish the rotation instead)."""
    from rotator.core import record as record_module

    rec = asked(awaiting())
    data = rec.to_storage()
    assert data["schema_version"] == SCHEMA_VERSION
    assert Record.from_storage(data) == rec
    assert awaiting().to_storage()["schema_version"] < ROLLOUT_SCHEMA_VERSION
    monkeypatch.setattr(record_module, "SCHEMA_VERSION", ROLLOUT_SCHEMA_VERSION)
    monkeypatch.setattr(record_module, "READABLE_SCHEMAS", frozenset({1, 2, 3}))
    with pytest.raises(NewerRecordError):
        Record.from_storage(data)


def test_a_second_abort_while_the_first_deletes_its_secret_says_it_is_aborted():
    """After an abort in creating the record deletes the abandoned secret (retiring, no new
    secret): a second abort is refused as 'already aborted', not as a rotation retiring."""
    rec = asked(created())
    deleting = machine.step(rec, observe(rec, intercom=(OLD,), history=NEVER_HELD), NOW).record
    assert deleting.phase is Phase.RETIRING
    said = abort.refusal(deleting) or ""
    assert "already aborted" in said
    assert "no undelete" not in said


def test_creating_with_a_store_undone_before_the_record_knew_restores_instead():
    """The store of 101 landed, then a Vault restore (or a hand edit) put 100 back before the
    record knew: the path's history shows 101 held, so consumers may have read it; it is
    backed out after a rollout, never deleted at once (found by the simulation). Without a
    look at the history, the same: it may have reached them."""
    rec = asked(created())
    seen = replace(history(), pending_seen=True)
    for looked in (seen, None):
        decision = machine.step(rec, observe(rec, intercom=(OLD,), history=looked), NOW)
        assert decision.action != Delete("101"), decision.reason
