"""Rotation windows in the decision core (issue 13, item 3): a scheduled rotation starts, and an
old secret retires, only while ``Observation.window`` says a window is open; rotate-now starts at
once but still retires inside a window; an emergency ignores windows; no window, no change.
Pure: no I/O, the window state is a plain value."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from test_machine import NOW, awaiting, confirmed, idle, in_flight, observe

from rotator.core import machine
from rotator.core.observation import ConsumerView, Create, Delete, RotateNow
from rotator.core.record import Phase
from rotator.core.windows import WindowState

OPENS = NOW + timedelta(hours=20)
CLOSED = WindowState(open=False, opens_at=OPENS)
OPEN = WindowState(open=True, closes_at=NOW + timedelta(hours=2))
WAIT = f"outside its window until {OPENS.isoformat()}"


def test_due_outside_a_window_rests_and_says_until_when():
    """Due, window closed: no create, no lease, the reason names the next opening."""
    decision = machine.step(idle(), observe(idle(), due=True, window=CLOSED), NOW)
    assert decision.action is None
    assert decision.reason == WAIT
    assert decision.record.phase is Phase.IDLE
    assert decision.record.lease is None


def test_due_inside_a_window_starts_the_rotation():
    """The same due target with its window open creates the new secret."""
    decision = machine.step(idle(), observe(idle(), due=True, window=OPEN), NOW)
    assert isinstance(decision.action, Create)
    assert "schedule due" in decision.reason


def test_rotate_now_and_a_target_with_nothing_to_read_start_outside_a_window():
    """Only a scheduled start waits: an operator's rotate-now, and a consumers' path holding no
    secret (consumers would have nothing), start at once."""
    asked = machine.step(idle(), observe(idle(), command=RotateNow(), window=CLOSED), NOW)
    assert isinstance(asked.action, Create)
    empty = observe(idle(), due=True, consumer=ConsumerView(None, None, None), window=CLOSED)
    assert isinstance(machine.step(idle(), empty, NOW).action, Create)


def test_past_its_grace_outside_a_window_nothing_is_deleted_until_it_opens():
    """The rollout is done (grace elapsed, then also confirmed): the old secret stays live
    while the window is closed, and is retired by the first pass inside the next one."""
    rec = awaiting()
    later = NOW + timedelta(days=3)
    decision = machine.step(rec, in_flight(rec, window=CLOSED), later)
    assert decision.action is None
    assert decision.record.phase is Phase.AWAITING_ROLLOUT
    assert decision.record.current_id == "100"
    assert decision.reason.endswith(f"but {WAIT}: the old secret is retired then")
    sure, _, _ = confirmed(rec)
    assert machine.step(sure, in_flight(sure, window=CLOSED), NOW).action is None
    inside = machine.step(decision.record, in_flight(decision.record, window=OPEN), later)
    assert inside.action == Delete("100")


def test_rotate_now_retires_only_inside_a_window_but_an_emergency_at_once():
    """A rotate-now rotation waits for the window to retire; an emergency deletes the leaked
    secret as soon as it is stored, window or not."""
    rec = awaiting()
    late = NOW + timedelta(days=3)
    asked = machine.step(rec, in_flight(rec, command=RotateNow(), window=CLOSED), late)
    assert asked.action is None
    assert WAIT in asked.reason
    urgent = machine.step(
        rec, in_flight(rec, command=RotateNow(emergency=True), window=CLOSED), NOW
    )
    assert urgent.action == Delete("100")
    flagged = replace(rec, emergency=True)
    assert machine.step(flagged, in_flight(flagged, window=CLOSED), NOW).action == Delete("100")


def test_without_windows_the_decisions_are_unchanged():
    """``window=None`` (no windows configured) starts and retires exactly as before."""
    assert isinstance(machine.step(idle(), observe(idle(), due=True), NOW).action, Create)
    rec = awaiting()
    later = NOW + timedelta(days=3)
    assert machine.step(rec, in_flight(rec), later).action == Delete("100")


def test_a_closed_window_with_no_opening_in_sight_still_rests():
    """A window state with no next opening (none within the horizon) never starts a scheduled
    rotation, and says so."""
    never = WindowState(open=False, opens_at=None)
    decision = machine.step(idle(), observe(idle(), due=True, window=never), NOW)
    assert decision.action is None
    assert decision.reason.startswith("outside its window until a window opens")
