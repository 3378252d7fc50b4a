"""Review of this session's start-up and Vault-call changes (issue 15 item 1), as a hostile
operator and a legal-but-odd Vault would attack them: the hand-off of a record from the actor
check to the request and from the request to its pass, and the deferred asyncio of the entry
point. Real OpenBao and emulator; the asyncio cases in processes of their own."""

from __future__ import annotations

import pytest
from test_pause import _cli
from test_rotation import World, bootstrap, state_version
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here
from test_startup import says_ok

from rotator.core.observation import RotateNow
from rotator.reconciler import TargetPaused

# --- the hand-offs -------------------------------------------------------------------------------


def test_a_join_decided_from_a_stale_read_still_finds_the_pause(world: World):
    """A rotation awaits its rollout; the operator's rotate-now reads the record (its actor
    check), then another process pauses the target. Joining the rotation writes nothing, so no
    check-and-set would catch the stale read: the request is decided again on a fresh read and
    refused naming the pause, with nothing written, as before the hand-off."""
    bootstrap(world)
    reconciler = world.reconciler()
    first = reconciler.reconcile_target("web", RotateNow(by="alice"))
    assert first.phase == "awaiting_rollout", first
    read, _ = reconciler.read("web")
    world.reconciler(me="other").pause("web", by="bob", reason="freeze")
    version, created = state_version(world), len(world.emulator.store.all())
    with pytest.raises(TargetPaused, match="paused by bob"):
        reconciler.reconcile_target("web", RotateNow(by="carol"), read=read)
    assert state_version(world) == version
    assert len(world.emulator.store.all()) == created


def test_a_waiting_request_read_stale_is_not_taken_as_still_waiting(world: World):
    """The record the actor check read holds a request still waiting (an earlier rotate-now
    that another process then served, and paused the target after): a second rotate-now that
    starts from that read must not report the stale request as covering it; it is decided on
    the fresh record, which is paused."""
    bootstrap(world)
    other = world.reconciler(me="other")
    reconciler = world.reconciler()
    # An earlier request, recorded but not served yet (the pass that would serve it is skipped).
    reconciler.store.update(
        world.target,
        lambda r: None if r is None else _with_request(r, world.clock()),
        reason="rotate-now requested",
    )
    read, _ = reconciler.read("web")
    assert read.record is not None
    assert read.record.request is not None
    other.pause("web", by="bob", reason="freeze")
    with pytest.raises(TargetPaused, match="paused by bob"):
        reconciler.reconcile_target("web", RotateNow(by="carol"), read=read)


def _with_request(record, at):
    """``record`` with an ordinary rotate-now waiting in it."""
    from rotator.core import transitions
    from rotator.core.record import Request

    return transitions.requested(record, Request(emergency=False, by="alice", at=at))


def test_an_actor_quoting_the_secret_is_refused_with_nothing_written(world: World, tmp_path):
    """``rotate-now --actor <the live secret>`` (a wrong paste) through the real entry point:
    exit 2, nothing written, the material in neither stream; the actor check's read is still
    made before anything is written."""
    bootstrap(world)
    secret = world.consumer()["secret"]
    version, created = state_version(world), len(world.emulator.store.all())
    result = _cli(world, tmp_path, "rotate-now", "web", "--actor", secret)
    assert result.returncode == 2, result.stderr
    assert "nothing was written" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert state_version(world) == version
    assert len(world.emulator.store.all()) == created


# --- the deferred asyncio --------------------------------------------------------------------------

#: The entry point's start-up (stand-in bound, structlog imported, ``started``), then what a
#: verb's work, the daemon's threads or a library may do with asyncio.
AFTER_START_UP = """\
import sys, threading
from rotator.cli import process
process._defer_asyncio()
import structlog  # binds the stand-in, as rotator's logs do
process._starting.set()  # as run() does
process.started()
assert "asyncio.base_events" not in sys.modules, "start-up loaded asyncio"
process._loading.acquire()  # another thread is in the stand-in's first use
def submodule_first():
    import asyncio.subprocess  # a library importing a submodule before any attribute
worker = threading.Thread(target=submodule_first, daemon=True)
worker.start()
worker.join(10)
process._loading.release()
assert not worker.is_alive(), "a submodule import waited on the stand-in's first use"
import asyncio
assert asyncio.create_subprocess_exec is asyncio.subprocess.create_subprocess_exec, (
    "asyncio.subprocess ran twice"
)
asyncio.configured_by_a_library = True
assert structlog.stdlib.asyncio.configured_by_a_library  # the stand-in forwards to the real one
print("ok")
"""


def test_asyncio_after_start_up_is_the_real_module_every_way():
    """Once start-up is over, asyncio is imported the usual way: a submodule imported first
    runs once (one ``Process`` class, not two), even from a thread while another thread is in
    the stand-in's first use (it waited for ever before), and an attribute a library sets is
    on the module everyone uses; structlog's stand-in forwards to it."""
    says_ok(AFTER_START_UP)
