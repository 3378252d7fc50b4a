"""The quiet daemon of the simulation (``tests/simulation/quiet.py``) on two states a run leaves
often, replayed: a rotation waiting for its grace deadline, and a rotation a crashed process
left under its lease. The real ``Watch`` wakes the daemon only when ``next_wakeup`` says, and it
finishes the rotation alone; and the liveness judge catches a ``next_wakeup`` that forgets the
deadline or the lease (the mutation check, ``simulation/mutants.py``, runs such mutants over
the whole simulation; here one example each, within CI's time).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from simulation.quiet import QuietDaemon
from simulation.stats import COUNTS
from test_simulation import Simulation

from rotator.core.record import Phase
from rotator.core.wakeups import Wakeup, next_wakeup
from rotator.daemon import watch


def _awaiting_grace(state: Simulation) -> None:
    """rotate-now stores 101 and waits for the grace deadline (no hook will call)."""
    state._finish(state.processes["a"], "rotate-now")
    record = state.world.state_record()
    assert record is not None
    assert record.phase is Phase.AWAITING_ROLLOUT
    assert record.deadline is not None


def _lease_left(state: Simulation) -> None:
    """Another process's rotate-now dies after taking the lease, before its create."""
    state.start(actor="c", pick=0, right=False, steps=8)
    state.processes["c"].crash()
    record = state.world.state_record()
    assert record is not None
    assert record.lease is not None


LEFT = {"deadline": _awaiting_grace, "lease": _lease_left}


@pytest.fixture
def state() -> Iterator[Simulation]:
    """A provisioned target (100 current) and processes that may run rotate-now."""
    simulation = Simulation()
    simulation.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=True,
        commands=["rotate-now"],
        disruptions=["crash"],
    )
    yield simulation
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _quiet(state: Simulation) -> QuietDaemon:
    """What teardown does before it settles: every process dies; then the quiet daemon (with
    the hook consumers the run's plan names)."""
    for process in state.processes.values():
        process.crash()
    daemon, checker, operator = state.processes.values()
    return QuietDaemon(state.world, state._run, (daemon, checker, operator), state.plan.hooks)


@pytest.mark.parametrize("left", sorted(LEFT))
def test_the_quiet_daemon_alone_finishes_a_rotation_at_its_wakeups(state, left):
    """From a rotation waiting for its grace deadline, or left under a dead process's lease,
    the quiet daemon woken only at its wakeups finishes it: 100 retired, 101 current, asleep
    until the schedule; in a handful of ticks (not one a minute), and every sleep judged."""
    LEFT[left](state)
    before = COUNTS.copy()
    _quiet(state).settle(state._strays, state.watch.served)
    ran = COUNTS - before
    record = state.world.state_record()
    assert record is not None
    assert record.phase is Phase.IDLE
    assert not state.world.live("100")
    assert state.world.live(record.current_id or "")
    assert ran["quiet ticks"] <= 12, ran
    assert ran["liveness checks"] >= 2, ran
    assert not state.watch.violations


@pytest.mark.parametrize("left", sorted(LEFT))
def test_a_wakeup_that_forgets_the_deadline_or_the_lease_is_caught(state, left, monkeypatch):
    """The judge can fail: a ``next_wakeup`` that answers "not before someone writes" where
    the real one names the grace deadline (or the lease's end) leaves the rotation to the sweep;
    a plain pass of another process before the daemon wakes changes the record, and the
    quiet settle fails saying so."""

    def forgetful(*args: object, **kwargs: object) -> Wakeup | None:
        found = next_wakeup(*args, **kwargs)  # type: ignore[arg-type]
        return None if found is not None and found.reason == left else found

    LEFT[left](state)
    monkeypatch.setattr(watch, "next_wakeup", forgetful)
    quiet = _quiet(state)
    with pytest.raises(AssertionError, match=r"liveness: .*\(no wakeup\), yet a plain pass"):
        quiet.settle(state._strays, state.watch.served)
