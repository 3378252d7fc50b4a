"""Review of d74cca1 (a request waiting behind a blocked back-out resumes it once): an operator's
new rotate-now over a spent request must be persisted as a fresh ask (PRODUCT.md rule 3), so it
is served even when the process that recorded it dies before its own pass."""

from __future__ import annotations

import random
from dataclasses import replace

from simulation.actors import Commands, Process
from simulation.world import STATE, World
from test_machine import NOW, awaiting, in_flight

from rotator.core import machine, transitions
from rotator.core.observation import RotateNow
from rotator.core.record import Phase, Record, Request, Restoring


def _blocked_back_out(spent: Request) -> Record:
    backing_out = replace(
        awaiting(),
        restoring=Restoring(rotation_id="r-old", by="alice", at=NOW, reason="bad secret"),
        request=spent,
    )
    return transitions.blocked(backing_out, "Intercom refused: missing scope")


def test_a_rotate_now_over_a_spent_request_is_recorded_as_a_fresh_ask():
    """The record holds a blocked back-out whose waiting request already resumed it once. An
    operator types rotate-now and the process dies right after recording it: the next pass of
    another process, served from the record, resumes the block. Break: a waiting request
    'covered' the new one, nothing was written, the mark stayed, and the ask was lost."""
    world = World(random.Random(11))
    daemon = Process(world, "daemon", mono_offset=0.0, skew=0.0)
    daemon.boot()
    Commands(daemon).daemon_pass()  # a record bound to the simulated workspace
    record = world.state_record()
    assert record is not None
    spent = Request(emergency=False, by="bob", at=NOW, resumed=True)
    blocked = replace(_blocked_back_out(spent), binding=record.binding)
    _, version = world.latest(STATE)
    world.kv_write(STATE, blocked.to_storage(), cas=version)

    operator = Process(world, "operator", mono_offset=0.0, skew=0.0)
    operator.boot()
    assert operator.reconciler is not None
    reconciler = operator.reconciler
    reconciler._request(reconciler.target("web"), RotateNow(by="carol"))  # then: SIGKILL

    stored = world.state_record()
    assert stored is not None
    assert stored.request is not None, "the request was lost"
    served = machine.step(stored, in_flight(stored), NOW)
    assert served.record.phase is not Phase.BLOCKED, "the operator's ask was not persisted"
