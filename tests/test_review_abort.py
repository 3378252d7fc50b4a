"""Adversarial review of ``rotator abort`` (issue 13, item 4): a hostile operator, a late hook,
an odd Vault history, a consumers' path written behind rotator's back. Each test names the rule
of PRODUCT.md the abort must keep; a test marked ``xfail(strict=True)`` is a break whose fix lies
outside ``rotator/core/abort.py``, ``rotator/reconciler/controls.py`` and ``rotator/cli/rotate.py``
(its reason says where)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_abort import _rotating
from test_abort_core import OLD_SECRET, asked, history, on_new
from test_machine import NEW_SECRET, NOW, POLICY, awaiting, created
from test_pause import _cli
from test_rotation import state_version
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator import failpoints
from rotator.core import abort, machine, transitions
from rotator.core.confirmation import ConfirmStatus, confirm
from rotator.core.observation import (
    ConsumerView,
    Delete,
    KVHistory,
    PreviousSecret,
    RotateNow,
    Store,
    Stored,
    absorb,
)
from rotator.core.record import Phase, Record, Request

RESTORED = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)


def backing_out() -> Record:
    """A restore stored and read back: awaiting the rollout of secret 100 again, the abandoned
    secret 101 current until that is done."""
    rec = asked(awaiting())
    back = machine.step(rec, on_new(rec, history=history()), NOW).record
    step = machine.step(back, absorb(on_new(back, consumer=RESTORED), Stored(RESTORED)), NOW)
    assert step.record.phase is Phase.AWAITING_ROLLOUT
    assert step.record.restoring is not None
    return step.record


def test_an_abort_after_a_store_again_never_deletes_the_secret_consumers_saw():
    """Rule 1. Awaiting the rollout of 101, someone put the old secret back at the path by hand;
    the target blocked; ``rotate-now`` (or ``resume``) sent it back to ``creating`` to store 101
    again, and that store has not happened yet (it failed, or the process died). 101 was at the
    consumers' path for a while: a consumer may sign with it. An abort must not delete it at once
    as if it "never reached consumers"; it may go only after the rollout of the restore."""
    stored = awaiting()
    again = transitions.store_again(stored)  # what ``operator_requests.resumed`` does on rotate-now
    assert again.phase is Phase.CREATING
    assert again.stored_version == 4
    rec = asked(again)
    by_hand = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)
    decision = machine.step(rec, on_new(rec, consumer=by_hand, history=history()), NOW)
    assert decision.action != Delete("101")
    assert "101" in decision.record.known_ids
    # Even past any grace, 101 goes only once the restore of 100 is rolled out.
    assert decision.record.restoring is not None
    assert decision.record.pending_id == "100"


def test_a_late_confirmation_naming_the_aborted_rotation_does_not_end_the_back_out():
    """Rule 1 and the hook's rule (a confirmation counts only for the secret stored now). A
    consumer that read the NEW secret and its ``rotation_id`` from the path confirms by that
    rotation id, after the abort restored the old secret: that says it runs 101, the abandoned
    one, so it must not confirm the restore (which would delete 101 under it)."""
    rec = backing_out()
    aborted_rotation = rec.restoring.rotation_id if rec.restoring else ""
    after, status, _ = confirm(
        rec,
        POLICY,
        RESTORED,
        secret_id=None,
        rotation_id=aborted_rotation,
        via="hook:bearer",
        now=NOW + timedelta(minutes=1),
    )
    assert status is not ConfirmStatus.CONFIRMED, "the abandoned secret's rollout ended it"
    assert after is None
    # The restore's own rotation id (what consumers read at the path with 100) confirms it.
    after, status, _ = confirm(
        rec,
        POLICY,
        RESTORED,
        secret_id=None,
        rotation_id=rec.rotation_id,
        via="hook:bearer",
        now=NOW + timedelta(minutes=1),
    )
    assert status is ConfirmStatus.CONFIRMED


def test_an_emergency_waiting_with_the_abort_is_not_lost():
    """Rule 1 and the emergency's meaning: an emergency ``rotate-now`` recorded while an abort
    waits (another process wrote it) says the secret consumers held is leaked. Serving the abort
    first restores that very secret and the request joins the back-out and vanishes: the leaked
    secret ends up current again. The abort must give way to the emergency."""
    waiting = asked(awaiting())
    leak = Request(emergency=True, by="bob", at=NOW, leaked="100")
    rec = replace(waiting, request=leak)
    decision = machine.step(rec, on_new(rec, history=history()), NOW)
    assert decision.record.restoring is None, decision.reason
    assert decision.record.pending_id != "100"
    assert decision.record.emergency


def test_an_emergency_asked_in_this_pass_with_the_abort_waiting_is_not_inverted():
    """The same, asked of the process serving the abort (``rotate-now --emergency``): the
    restore must not become an emergency that deletes the abandoned secret at once and keeps
    the leaked one current."""
    rec = asked(awaiting())
    obs = on_new(rec, history=history(), command=RotateNow(emergency=True))
    decision = machine.step(rec, obs, NOW)
    assert decision.record.restoring is None, decision.reason
    assert decision.action != Delete("101")


def test_an_emergency_during_a_restore_does_not_keep_the_leaked_secret():
    """An emergency asked while a restore awaits its rollout: the restored secret (100) is the
    one consumers hold, so the one leaked. Joining the back-out deletes 101 and ends idle with
    100 current and no rotation: the leak stays. It should start a rotation away from 100 (or
    refuse, saying so), never end with 100 current."""
    rec = backing_out()
    obs = on_new(rec, consumer=RESTORED, command=RotateNow(emergency=True))
    decision = machine.step(rec, obs, NOW)
    assert decision.action != Delete("101")


def test_a_rotate_now_during_a_restore_is_not_swallowed():
    """``rotate-now`` while a restore awaits its rollout: the operator asked for a new secret.
    Joining the back-out serves the request with nothing: it should wait and start a rotation
    once the back-out ends, as a rotate-now during a sweep of orphans does."""
    rec = replace(backing_out(), request=Request(emergency=False, by="bob", at=NOW, leaked="101"))
    decision = machine.step(rec, on_new(rec, consumer=RESTORED), NOW)
    assert decision.record.request is not None


def test_a_third_secret_written_to_the_path_before_serving_is_not_overwritten():
    """Rule 2 (a secret someone else put at the consumers' path blocks the target instead of
    being guessed about). Between the abort request and its serving, someone wrote secret 555
    at the path: the abort must not write 100 over it (consumers may already use 555)."""
    rec = asked(awaiting())
    other = ConsumerView(intercom_id="555", fingerprint="sha256:555", version=5)
    decision = machine.step(rec, on_new(rec, consumer=other, history=history()), NOW)
    assert not isinstance(decision.action, Store), decision.reason
    assert decision.record.restoring is None


def test_without_a_recorded_fingerprint_only_the_version_just_before_the_store_is_trusted():
    """Rule 1. A rotation started by an older rotator has no ``current_fingerprint``: nothing
    checks the material of the KV version restored. If the version just before the store was
    soft-deleted, the newest one left holding the old id may hold other material (a hand edit
    fixed since): restoring it hands every consumer a key Intercom does not have. Only the
    version right below the store is what consumers had."""
    rec = asked(replace(awaiting(), current_fingerprint=None))
    older = PreviousSecret(
        version=2,
        intercom_id="100",
        secret=OLD_SECRET,
        fingerprint="sha256:typo",
        name="Production Web",
        created_at=1_700_000_000,
    )
    decision = machine.step(rec, on_new(rec, history=KVHistory(below=4, found=older)), NOW)
    assert decision.record.restoring is None, decision.reason
    assert "abort refused" in decision.reason
    ok = replace(older, version=3)
    decision = machine.step(rec, on_new(rec, history=KVHistory(below=4, found=ok)), NOW)
    assert decision.record.restoring is not None


def test_the_restore_of_a_creating_rotation_with_the_store_landed_keeps_rule_1():
    """Control: the store of 101 landed but was not recorded (creating, path holds 101): the
    abort restores 100 and keeps 101 until that rollout, as the commit says."""
    rec = asked(created())
    view = ConsumerView(intercom_id="101", fingerprint=NEW_SECRET.fingerprint(), version=4)
    decision = machine.step(rec, on_new(rec, consumer=view, history=history()), NOW)
    assert decision.action == Store(cas=4)
    assert abort.refusal(decision.record) is not None  # a second abort is refused


# --- end to end: real ``rotator`` processes on OpenBao and the emulator ---------------------------


def test_a_reason_with_terminal_escapes_is_refused_and_nothing_written(world, tmp_path):
    """Rule 6 (bad input gets a clear error and changes nothing). A reason (or actor) carrying
    terminal control sequences would be kept in the record and replayed raw to every terminal
    that prints it (this command's own line, notifications, logs): refused, exit 2."""
    _rotating(world)
    version = state_version(world)
    evil = "bad deploy\x1b]0;pwned\x07\x1b[2J"
    done = _cli(world, tmp_path, "abort", "web", "--reason", evil)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "\x1b" not in done.stdout + done.stderr
    assert state_version(world) == version
    by = _cli(world, tmp_path, "abort", "web", "--reason", "r", "--actor", "eve\x1b[31m")
    assert by.returncode == 2, by.stdout + by.stderr
    assert state_version(world) == version


def test_a_reason_quoting_secret_material_is_refused_and_never_echoed(world, tmp_path):
    """Rule 5 (no material outside Vault). An operator pastes the old secret into ``--reason``
    ("rolled back to <material>"): kept, it would go to the history, ``status --json``, the
    notifications and this command's own output. Refused, exit 2, never printed."""
    _, material, _ = _rotating(world)
    version = state_version(world)
    done = _cli(world, tmp_path, "abort", "web", "--reason", f"back to {material}")
    assert done.returncode == 2, done.stdout + done.stderr
    assert material not in done.stdout + done.stderr
    assert state_version(world) == version


def test_an_abort_never_restores_a_secret_intercom_deleted(world, tmp_path):
    """Rule 1 (the secret the Vault path holds is always live at Intercom). The old secret was
    deleted at Intercom outside rotator during the rollout (someone cleaning up by hand): the
    abort writes it back anyway, and every consumer that reloads signs with a dead key."""
    old, _, new = _rotating(world)
    assert world.emulator.store.delete("default", old)
    _cli(world, tmp_path, "abort", "web", "--reason", "r")
    assert world.consumer()["intercom_id"] == new


def test_a_plan_with_an_abort_waiting_says_so_and_changes_nothing(world, tmp_path):
    """``rotator plan`` with an abort recorded but not served (the target is paused): it reads
    the KV history like a pass, writes nothing, and the restore is still served afterwards."""
    old, material, new = _rotating(world)
    assert _cli(world, tmp_path, "pause", "web", "--reason", "freeze").returncode == 0
    assert _cli(world, tmp_path, "abort", "web", "--reason", "r").returncode == 0
    version, path = state_version(world), world.consumer()
    plan = _cli(world, tmp_path, "plan", "web")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert (state_version(world), world.consumer()) == (version, path)
    assert material not in plan.stdout + plan.stderr
    assert world.record().abort is not None
    assert _cli(world, tmp_path, "resume", "web").returncode == 0
    assert world.consumer()["intercom_id"] == old
    assert sorted(world.live()) == sorted([old, new])


def test_a_crash_after_the_restore_store_resumes_without_breaking_anyone(world):
    """Rule 3. The process dies right after writing the old secret back, before recording it:
    the next pass finds it at the path, records that store, and both secrets stay live until
    the restore's rollout; then only the abandoned one goes."""
    old, material, new = _rotating(world)
    reconciler = world.reconciler()  # its lease is its own: no wait for a ttl
    reconciler.abort("web", by="alice", reason="r")
    failpoints.reset_for_tests("vault.after_store=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            reconciler.reconcile_target("web")
    finally:
        failpoints.reset_for_tests()
    assert (world.consumer()["intercom_id"], world.consumer()["secret"]) == (old, material)
    assert world.record().phase is Phase.CREATING
    report = reconciler.reconcile_all()[0]
    assert world.record().phase is Phase.AWAITING_ROLLOUT, report
    assert sorted(world.live()) == sorted([old, new])
    world.clock.now = datetime.now(UTC) + timedelta(hours=25)
    world.reconciler().reconcile_all()
    assert world.live() == [old]
    assert world.record().history[-1].outcome == "aborted"
