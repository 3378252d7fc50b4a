"""Rotation windows in the simulation (``tests/simulation/windows.py``), replayed: a due start a
closed window holds, under the quiet daemon of ``simulation/quiet.py``, and an emergency typed
during an abort's back-out. The real ``Watch`` sleeps until the window opens (one judged sleep,
not a poll a minute) and rotates inside it; the judge catches the ``_window`` mutants of
``simulation/mutants.py`` (an opening read a day late, a closed window taken for "due now"),
here one example each, within CI's time; an emergency waits for no window, even behind a
back-out (found by the simulation: seed 2233161, issue 15 item 2), nor does a rotate-now
waiting behind a back-out poll until the window opens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
import structlog
from simulation.actors import Plan
from simulation.stats import COUNTS
from simulation.windows import DURATIONS, is_open, next_opening
from test_quiet_liveness import _quiet
from test_simulation import DAY, Simulation

from rotator.core import wakeups
from rotator.core.record import Phase
from rotator.core.windows import WindowState

#: Once a day at 02:45 UTC for ten minutes: the simulation starts at 14:13 UTC, so a start
#: due from then on waits about 12.5 hours.
DAILY = Plan(windows=(("45 2 * * *", "10m", "UTC"),))


@pytest.fixture
def state() -> Iterator[Simulation]:
    """A provisioned target (100 current) with the daily window, closed now."""
    simulation = Simulation()
    simulation.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=True,
        commands=["rotate-now", "abort", "emergency"],
        disruptions=["crash"],
        plan=DAILY,
    )
    yield simulation
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def _due_while_closed(state: Simulation) -> float:
    """A day and an hour pass: the schedule ("1d") is due, the window closed; its opening."""
    state.time_passes(DAY + 3600.0)
    assert not is_open(DAILY.windows, state.world.now)
    opens = next_opening(DAILY.windows, state.world.now)
    assert opens is not None
    return opens


def test_a_due_start_sleeps_until_the_window_opens_and_rotates_inside_it(state):
    """Due while closed: the quiet daemon sleeps once until the opening (the sleep judged: a
    plain pass before it changes nothing) and starts the rotation inside the window; its
    retirement, past the grace, sleeps until the next day's window (judged too); it settles
    asleep until its schedule, in a dozen ticks, not one a minute for the hours closed."""
    opens = _due_while_closed(state)
    before = COUNTS.copy()
    _quiet(state).settle(state._strays, state.watch.served)
    ran = COUNTS - before
    record = state.world.state_record()
    assert record is not None
    assert record.phase is Phase.IDLE
    assert not state.world.live("100")
    born = state.world.secrets["101"].born
    assert opens <= born < opens + DURATIONS["10m"]
    assert ran["window waits (idle)"] == 1, ran
    assert ran["window waits (awaiting_rollout)"] >= 1, ran
    assert ran["liveness checks"] >= 1, ran
    assert ran["quiet ticks"] <= 12, ran
    assert not state.watch.violations


def test_a_window_opening_read_a_day_late_is_caught(state, monkeypatch):
    """The mutant ``wakeup-window-a-day-late``: the daemon would sleep a day past the opening;
    a plain pass just before it starts the rotation, and the settle fails saying so."""
    real = wakeups._window

    def late(window: WindowState | None) -> wakeups.Wakeup | None:
        found = real(window)
        return None if found is None else wakeups.Wakeup(found.at + timedelta(days=1), "window")

    _due_while_closed(state)
    monkeypatch.setattr(wakeups, "_window", late)
    quiet = _quiet(state)
    with pytest.raises(AssertionError, match=r"liveness: .*its window wakeup\), yet a plain"):
        quiet.settle(state._strays, state.watch.served)


def test_a_closed_window_taken_for_due_now_is_caught(state, monkeypatch):
    """The mutant ``wakeup-window-closed-polls``: ``_window`` answers ``None`` for a closed
    window that opens later, so the due target is read every ``poll`` until it opens; the
    first such pass changes nothing while every window is closed, and the settle fails."""
    _due_while_closed(state)
    monkeypatch.setattr(wakeups, "_window", lambda _window: None)
    quiet = _quiet(state)
    with pytest.raises(AssertionError, match=r"quiet: the daemon woke within poll \(due\)"):
        quiet.settle(state._strays, state.watch.served)


def test_an_emergency_typed_during_a_back_out_waits_for_no_window(state):
    """rotate-now stores 101, an abort restores 100 (abandoning 101), then an emergency is
    typed while the window is closed: the back-out retires 101 once its grace ends and the
    emergency then rotates the leaked 100 away, both within I9's two hours, not at the next
    opening 12.5 hours later. Break (the simulation's seed 2233161): the back-out's retirement
    waited for the window, and the emergency waited behind it."""
    processes = state.processes
    state._finish(processes["a"], "rotate-now")
    state._finish(processes["a"], "abort", right=True)
    record = state.world.state_record()
    assert record is not None
    assert record.restoring is not None
    state._finish(processes["b"], "emergency")
    assert not is_open(DAILY.windows, state.world.now)
    state.teardown()
    assert not state.watch.violations
    assert not state.world.live("100")
    assert not state.world.live("101")


def test_a_probed_rollout_done_is_probed_until_the_window_opens_then_retires():
    """Named consumers, probed: rotate-now stores 101 outside the window, the hook consumers
    confirm and the probes see every instance switch, so the rollout is done but the closed
    window holds the retirement for hours. The quiet daemon keeps its probe rounds (one a
    ``poll``: rounds still record streaks, so a sleep until the opening would skip writes)
    within the settle's budget for them, and retires 100 inside the window. Found by the
    simulation (seed 0 of the derandomized run): the settle's 150 wakeups ran out first."""
    simulation = Simulation()
    plan = Plan(named=True, stable_probes=(1, 1), spacing=0.0, windows=DAILY.windows)
    simulation.setup(
        seed=0,
        skews=[0.0, 0.0, 0.0],
        provisioned=True,
        commands=["rotate-now"],
        disruptions=["crash"],
        plan=plan,
        mobile=2,
    )
    try:
        simulation._finish(simulation.processes["a"], "rotate-now")
        assert not is_open(plan.windows, simulation.world.now)
        before = COUNTS.copy()
        _quiet(simulation).settle(simulation._strays, simulation.watch.served)
        ran = COUNTS - before
        assert not simulation.world.live("100")
        died = simulation.world.secrets["100"].died
        assert died is not None
        assert is_open(plan.windows, died)
        assert ran["probes"] > 150, ran
        assert not simulation.watch.violations
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()


def test_a_rotate_now_behind_a_back_out_sleeps_until_the_window(state):
    """rotate-now stores 101, an abort restores 100, then another rotate-now (not an
    emergency) is typed: it joins no back-out, so it waits in the record until the back-out
    retires 101, which waits for the window. The quiet daemon sleeps until the deadline, then
    the opening, and serves the request inside it, in a handful of ticks. Break (found by the
    simulation, seed 0 of the derandomized run): the waiting request woke the daemon every
    ``poll`` for the hours the window was closed (150 wakeups and more)."""
    processes = state.processes
    state._finish(processes["a"], "rotate-now")
    state._finish(processes["a"], "abort", right=True)
    state._finish(processes["b"], "rotate-now")
    record = state.world.state_record()
    assert record is not None
    assert record.restoring is not None
    assert record.request is not None
    before = COUNTS.copy()
    _quiet(state).settle(state._strays, state.watch.served)
    ran = COUNTS - before
    assert not state.world.live("101")
    assert ran["window waits (awaiting_rollout)"] >= 1, ran
    assert ran["quiet ticks"] <= 20, ran
    assert not state.watch.violations
