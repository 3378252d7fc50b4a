"""A rotate-now's pass starts from the record its request just wrote, on OpenBao and the
emulator: one read of the record less per rotate-now (bench/RESULTS.md counts Vault calls), and
the same outcome when another process writes in between, because every write of the pass is
check-and-set on the version it started from."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_rotation import World, bootstrap, state_version
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.config import TargetSettings
from rotator.core.observation import RotateNow
from rotator.core.record import Record
from rotator.reconciler import TargetPaused


def _count_reads(world: World, reconciler: Any) -> list[str]:
    """The keys the reconciler's Vault adapter reads (the real adapter, counted)."""
    reads: list[str] = []
    vault = reconciler.store.kv
    read = vault.read

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(path)
        return read(path, *args, **kwargs)

    vault.read = counted
    return reads


def test_a_rotate_now_reads_its_record_once(world):
    """The request reads the record to write it; the pass does not read it back."""
    old = bootstrap(world)
    reconciler = world.reconciler()
    reads = _count_reads(world, reconciler)
    report = reconciler.reconcile_target("web", RotateNow(emergency=True, by="alice"))
    assert report.phase == "idle", report
    assert world.live() != [old]  # rotated, the old secret retired
    state = f"{world.settings.vault.state_path}/web"
    assert reads.count(state) == 1, reads


class _PauseOnRequest:
    """Another process pauses the target right after the request is written, before the pass
    that follows it starts."""

    def __init__(self, world: World) -> None:
        self.other = world.reconciler(me="other")
        self.done = False

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        del before, after
        if reason == "rotate-now requested" and not self.done:
            self.done = True
            self.other.pause(target.name, by="bob", reason="freeze")

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        pass


def test_a_write_between_the_request_and_its_pass_is_honoured(world):
    """The pass starts from the request's record; the pause another process wrote since is
    found by the first check-and-set write, and the pass starts over from a fresh read: the
    target stays paused and nothing is created at Intercom."""
    old = bootstrap(world)
    pauser = _PauseOnRequest(world)
    reconciler = world.reconciler(listeners=[pauser])
    report = reconciler.reconcile_target("web", RotateNow(by="alice"))
    assert pauser.done
    assert "paused by bob" in report.reason, report
    assert world.live() == [old]  # nothing created
    record = world.record()
    assert record is not None
    assert record.paused is not None
    assert record.request is not None  # the operator's ask is kept, served once resumed


def test_a_request_starts_from_the_record_its_caller_read(world):
    """``rotate-now`` reads the record first (to refuse an actor quoting secret material); the
    request starts from that read: the record is not read again for the whole command."""
    bootstrap(world)
    reconciler = world.reconciler()
    read, _ = reconciler.read("web")
    reads = _count_reads(world, reconciler)
    report = reconciler.reconcile_target("web", RotateNow(emergency=True), read=read)
    assert report.phase == "idle", report
    assert f"{world.settings.vault.state_path}/web" not in reads


def test_a_stale_read_given_to_a_request_is_found_stale(world):
    """Another process paused the target after the caller read the record: the request's
    check-and-set write fails, the fresh read finds the pause, and the rotate-now is refused
    with nothing written."""
    bootstrap(world)
    reconciler = world.reconciler()
    read, _ = reconciler.read("web")
    world.reconciler(me="other").pause("web", by="bob", reason="freeze")
    version = state_version(world)
    with pytest.raises(TargetPaused, match="paused by bob"):
        reconciler.reconcile_target("web", RotateNow(by="alice"), read=read)
    assert state_version(world) == version


def test_another_targets_read_is_no_starting_point(world):
    """A caller that hands over the record of another target (a slip of a future caller):
    the request reads its own target's record, and nothing of the other is written over it."""
    bootstrap(world)
    reconciler = world.reconciler()
    read, _ = reconciler.read("web")
    assert read.record is not None
    other = replace(read, record=replace(read.record, target="api", current_id="elsewhere"))
    report = reconciler.reconcile_target("web", RotateNow(emergency=True), read=other)
    assert report.phase == "idle", report
    record = world.record()
    assert record is not None
    assert record.target == "web"
    assert record.current_id != "elsewhere"
