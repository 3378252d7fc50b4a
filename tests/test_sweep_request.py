"""An operator's request that arrives while a sweep of orphans runs is served after it (found by
the simulation, seed 2440300826): a sweep (retiring with no new secret) is not a rotation, so a
rotate-now --emergency must not "join" it. Joining consumed the request and marked the sweep an
emergency; the sweep then ended idle, and the leaked secret stayed live with nothing asked."""

from __future__ import annotations

from dataclasses import replace

from test_machine import NOW, OLD, observe

from rotator.core import machine
from rotator.core.observation import Create, Delete, Deleted, absorb
from rotator.core.record import Phase, Record, Request


def _sweeping_with_an_emergency_waiting() -> Record:
    leak = Request(emergency=True, by="ops", at=NOW, leaked="100")
    return Record(
        target="web",
        phase=Phase.RETIRING,
        generation=4,
        current_id="100",
        old_ids=("102",),
        owned_names=("Production Web · rotator g3 abcdef",),
        last_rotation_at=NOW,
        request=leak,
    )


def test_an_emergency_asked_during_a_sweep_starts_its_rotation_once_the_sweep_ends():
    """The sweep deletes its orphan; the request is still there afterwards, and the next pass
    (which lists) starts an emergency rotation of the leaked secret."""
    record = _sweeping_with_an_emergency_waiting()
    first = machine.step(record, observe(record, intercom=None), NOW)
    assert first.action == Delete("102")
    assert first.record.request is not None
    after = machine.step(
        first.record, absorb(observe(first.record, intercom=None), Deleted("102")), NOW
    )
    assert after.record.phase is Phase.IDLE
    assert after.record.request is not None, "the emergency was consumed by the sweep"
    assert not after.record.emergency
    listed = observe(after.record, intercom=(OLD,))
    started = machine.step(after.record, listed, NOW)
    assert isinstance(started.action, Create)
    assert started.record.emergency
    assert started.record.request is None
    assert replace(started.record, lease=None).phase is Phase.CREATING
