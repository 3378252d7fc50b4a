"""``rotator abort`` end to end, on OpenBao and the emulator, through real ``rotator`` processes:
an abort while awaiting rollout writes the previous secret back (the very material consumers had,
from the KV history), keeps the abandoned one live until that restore is rolled out (grace, or a
hook confirmation of the restored id), then deletes it and records the rotation as aborted with
who and why; an abort while creating deletes the secret created for it; every refusal (idle,
retiring, emergency, a KV history that lost the previous version) exits 2 and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_pause import _cli
from test_rotation import World, bootstrap, state_version
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator import failpoints
from rotator.core.observation import RotateNow
from rotator.core.record import Phase


def _rotating(world: World, *, emergency: bool = False) -> tuple[str, str, str]:
    """A target awaiting the rollout of a new secret, on Vault's clock (so CLI processes and
    this process agree on deadlines): (old id, old material, new id)."""
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    old = bootstrap(world)
    material = world.consumer()["secret"]
    world.clock.now = datetime.now(UTC)
    report = world.reconciler().reconcile_target("web", RotateNow(emergency=emergency))
    new = world.consumer()["intercom_id"]
    assert new != old
    if not emergency:
        assert report.phase == "awaiting_rollout"
    return old, material, new


def test_an_abort_awaiting_rollout_restores_then_retires_the_abandoned_secret(world, tmp_path):
    """The previous secret (same id, same material) is back at the consumers' path at once; both
    secrets stay live until the restore's grace elapses; then the abandoned one is deleted, the
    old one is current, and the history says aborted, by whom and why."""
    old, material, new = _rotating(world)
    done = _cli(world, tmp_path, "abort", "web", "--reason", "bad deploy", "--actor", "alice")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "abort of rotation" in done.stdout
    assert f"secret {old} is back at the consumers' path; {new} is deleted" in done.stdout
    data = world.consumer()
    assert (data["intercom_id"], data["secret"]) == (old, material)
    assert sorted(world.live()) == sorted([old, new])
    record = world.record()
    assert record.restoring is not None
    assert (record.restoring.by, record.restoring.reason) == ("alice", "bad deploy")
    assert (record.pending_id, record.current_id, record.phase) == (
        old,
        new,
        Phase.AWAITING_ROLLOUT,
    )
    assert material not in done.stdout + done.stderr

    world.clock.now = datetime.now(UTC) + timedelta(hours=23)
    assert world.reconciler().reconcile_all()[0].phase == "awaiting_rollout"
    assert sorted(world.live()) == sorted([old, new])
    world.clock.now = datetime.now(UTC) + timedelta(hours=25)
    assert world.reconciler().reconcile_all()[0].phase == "idle"
    assert world.live() == [old]
    record = world.record()
    entry = record.history[-1]
    assert (record.current_id, entry.outcome, entry.by, entry.reason) == (
        old,
        "aborted",
        "alice",
        "bad deploy",
    )
    assert entry.retired_ids == (new,)
    assert record.to_storage()["schema_version"] == 2  # nothing of the abort is left


def test_a_hook_confirmation_of_the_restored_secret_ends_the_back_out(world, tmp_path):
    """The restore is rolled out like any rotation: confirming the restored id (not the
    abandoned one, which is refused) retires the abandoned secret before any grace."""
    old, _, new = _rotating(world)
    assert _cli(world, tmp_path, "abort", "web", "--reason", "r").returncode == 0
    wrong = _cli(world, tmp_path, "confirm", "web", "--secret-id", new)
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert sorted(world.live()) == sorted([old, new])
    right = _cli(world, tmp_path, "confirm", "web", "--secret-id", old)
    assert right.returncode == 0, right.stdout + right.stderr
    assert world.live() == [old]
    assert world.record().history[-1].outcome == "aborted"


def test_an_abort_while_creating_deletes_the_secret_created_for_it(world, tmp_path):
    """A crash after the create's commit point, before the store: the abort deletes the new
    secret (consumers never saw it), the consumers' path is untouched, the target is idle
    with its schedule counted from the aborted start (no new rotation at once)."""
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    old = bootstrap(world)
    before = world.consumer()
    world.clock.now = datetime.now(UTC)
    failpoints.reset_for_tests("vault.before_store=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            world.reconciler().reconcile_target("web", RotateNow())
    finally:
        failpoints.reset_for_tests()
    record = world.record()
    assert record.phase is Phase.CREATING
    assert record.pending_id is not None
    created = record.pending_id
    assert sorted(world.live()) == sorted([old, created])

    done = _cli(world, tmp_path, "abort", "web", "--reason", "wrong workspace")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "aborted by " in done.stdout
    assert "wrong workspace" in done.stdout
    assert world.live() == [old]
    assert world.consumer() == before
    record = world.record()
    assert (record.phase, record.current_id, record.history[-1].outcome) == (
        Phase.IDLE,
        old,
        "aborted",
    )
    assert record.history[-1].reason == "wrong workspace"
    again = _cli(world, tmp_path, "reconcile")
    assert again.returncode == 0
    assert "idle" in again.stdout
    assert world.live() == [old]  # not due: no rotation starts again at once


def test_refusals_exit_2_and_write_nothing(world, tmp_path: Path):
    """No rotation under way, a retiring one and an emergency: exit 2, a reason, the record
    and Intercom untouched."""
    bootstrap(world)
    version = state_version(world)
    idle = _cli(world, tmp_path, "abort", "web", "--reason", "r")
    assert idle.returncode == 2
    assert "no rotation is under way; nothing was written" in idle.stderr
    assert state_version(world) == version

    failpoints.reset_for_tests("intercom.before_delete=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            _rotating(world, emergency=True)
    finally:
        failpoints.reset_for_tests()
    assert world.record().phase is Phase.RETIRING
    version, live = state_version(world), sorted(world.live())
    retiring = _cli(world, tmp_path, "abort", "web")
    assert retiring.returncode == 2
    assert "retiring" in retiring.stderr
    assert "no undelete" in retiring.stderr
    assert (state_version(world), sorted(world.live())) == (version, live)


def test_an_emergency_is_not_put_back(world, tmp_path):
    """An emergency rotation blocked before its delete: aborting it would restore the leaked
    secret, so it is refused."""
    world.clock.now = datetime.now(UTC) - timedelta(days=40)
    bootstrap(world)
    world.clock.now = datetime.now(UTC)
    reconciler = world.reconciler()
    failpoints.reset_for_tests("vault.after_store=raise")
    try:
        with pytest.raises(failpoints.FailpointError):
            reconciler.reconcile_target("web", RotateNow(emergency=True))
    finally:
        failpoints.reset_for_tests()
    version = state_version(world)
    refused = _cli(world, tmp_path, "abort", "web", "--reason", "r")
    assert refused.returncode == 2
    assert "emergency" in refused.stderr
    assert state_version(world) == version


def test_a_kv_history_without_the_previous_version_is_refused(world, tmp_path, openbao):
    """The version holding the previous secret was destroyed: refused, nothing written, the
    rotation carries on to retire as before."""
    old, _, new = _rotating(world)
    path = world.target.vault_path.removeprefix("secret/")
    kv = openbao.admin().secrets.kv.v2
    latest = kv.read_secret_metadata(path=path, mount_point="secret")["data"]["current_version"]
    earlier = list(range(1, latest))
    kv.destroy_secret_versions(path=path, versions=earlier, mount_point="secret")
    version = state_version(world)
    refused = _cli(world, tmp_path, "abort", "web", "--reason", "r")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"no longer holds secret {old}" in refused.stderr
    assert state_version(world) == version
    assert world.consumer()["intercom_id"] == new
    assert sorted(world.live()) == sorted([old, new])
