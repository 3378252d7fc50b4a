"""A paused target decides no action at all, whatever its phase and whatever it observes; a
result that arrives while paused is still recorded (a create's commit point), and resuming
carries on from there. Pure: no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_machine import (
    NEW_SECRET,
    NOW,
    OLD,
    POLICY,
    awaiting,
    confirmed,
    idle,
    in_flight,
    live_new,
    observe,
    started,
    stored_view,
)

from rotator.core import machine, record, transitions
from rotator.core.confirmation import ConfirmStatus
from rotator.core.observation import (
    ConsumerRule,
    ConsumerView,
    Created,
    Delete,
    Deleted,
    Failed,
    LiveSecret,
    Observation,
    Result,
    RotateNow,
    Store,
    Stored,
    absorb,
    needs_intercom,
    needs_probes,
)
from rotator.core.record import NewerRecordError, Pause, Phase, Record

PAUSE = Pause(by="alice@ops-1", at=NOW - timedelta(minutes=5), reason="incident 42")
WHY = f"paused by alice@ops-1 since {PAUSE.at.isoformat()}: incident 42"


def paused(rec: Record) -> Record:
    return transitions.paused(rec, PAUSE)


def test_a_paused_due_target_starts_no_rotation_and_says_who_paused_it():
    """Due, or asked by rotate-now (even an emergency): no create, the reason names the pause,
    no lease is taken, and the request waits in the record for the resume."""
    rec = paused(idle())
    for obs in (
        observe(rec, due=True),
        observe(rec, command=RotateNow(emergency=True)),
        observe(rec, due=True, consumer=ConsumerView(None, None, None)),
    ):
        decision = machine.step(rec, obs, NOW)
        assert decision.action is None
        assert decision.reason == WHY
        assert decision.record.phase is Phase.IDLE
        assert decision.record.lease is None
        assert decision.record.paused == PAUSE


def test_paused_past_the_grace_keeps_both_secrets_live_and_resume_retires():
    """A rollout whose grace has long passed deletes nothing while paused; once unpaused,
    the same observation retires the old secret."""
    rec = paused(awaiting())
    later = NOW + timedelta(days=3)
    decision = machine.step(rec, in_flight(rec, due=True), later)
    assert decision.action is None
    assert decision.record.phase is Phase.AWAITING_ROLLOUT
    assert decision.record.current_id == "100"
    resumed = transitions.unpaused(decision.record)
    after = machine.step(resumed, in_flight(resumed), later)
    assert after.action == Delete("100")


def test_a_create_answered_after_the_pause_is_committed_but_not_stored():
    """The create was decided before the pause was written: its material is committed to the
    record (else it would be lost), and the store waits for the resume."""
    rec, name = started()
    rec = paused(rec)
    result = Created("101", name, 1_800_000_000, NEW_SECRET)
    decision = machine.step(rec, absorb(observe(rec), result), NOW)
    assert decision.action is None
    assert decision.reason == WHY
    assert decision.record.pending_id == "101"
    assert decision.record.pending_secret is not None
    assert decision.record.pending_secret.reveal() == NEW_SECRET.reveal()
    resumed = transitions.unpaused(decision.record)
    assert isinstance(machine.step(resumed, observe(resumed), NOW).action, Store)


def test_a_delete_answered_after_the_pause_is_recorded_and_the_next_waits():
    """Retiring two old secrets: the first DELETE's answer is recorded, the second waits."""
    rec = replace(awaiting(), phase=Phase.RETIRING, old_ids=("100", "99"), confirmed_at=NOW)
    rec = paused(rec)
    obs = absorb(in_flight(rec), Deleted("100"))
    decision = machine.step(rec, obs, NOW)
    assert decision.action is None
    assert decision.record.retired_ids == ("100",)
    assert decision.record.old_ids == ("99",)


def test_a_stored_answer_after_the_pause_waits_for_rollout_without_deleting():
    """An emergency's store answered while paused: recorded, but the old secret is not
    deleted (an emergency would delete it at once)."""
    rec, name = started()
    rec = replace(rec, emergency=True)
    done = machine.step(
        rec, absorb(observe(rec), Created("101", name, 1_800_000_000, NEW_SECRET)), NOW
    )
    rec = paused(done.record)
    obs = observe(rec, intercom=live_new(rec))
    decision = machine.step(rec, absorb(obs, Stored(stored_view(rec))), NOW)
    assert decision.action is None
    assert decision.record.stored_version == 4
    assert decision.record.current_id == "100"


def test_a_confirmation_is_recorded_while_paused():
    """The hook and the CLI may still confirm (no side effect); nothing is retired until the
    resume."""
    rec = paused(awaiting())
    updated, status, _ = confirmed(rec)
    assert status is ConfirmStatus.CONFIRMED
    assert updated is not None
    assert updated.confirmed_at is not None
    assert machine.step(updated, in_flight(updated), NOW).action is None


def test_a_paused_target_needs_no_list_and_no_probe():
    """Nothing will be decided, so a pass reads neither Intercom nor the consumers' instances."""
    rec = paused(awaiting())
    rec = replace(rec, confirmed_at=NOW)
    assert needs_intercom(rec, due=True, command=RotateNow(), now=NOW, consumers=True) is False
    probed = replace(POLICY, consumers=(ConsumerRule(name="api", probed=True),))
    assert needs_probes(rec, probed, now=NOW) is False
    assert needs_probes(transitions.unpaused(rec), probed, now=NOW) is True


# --- storage ----------------------------------------------------------------------------------


def test_a_pause_is_stored_as_schema_3_and_reads_back():
    """A paused record is written as schema 3 (an older rotator must refuse it), and reads
    back with who, when and why; an unpaused one stays schema 2 with no pause field."""
    rec = paused(idle())
    data = rec.to_storage()
    assert data["schema_version"] == 3
    assert data["paused"] == {
        "by": "alice@ops-1",
        "at": PAUSE.at.isoformat(),
        "reason": "incident 42",
    }
    assert Record.from_storage(data) == rec
    plain = idle().to_storage()
    assert plain["schema_version"] == 2
    assert "paused" not in plain


def test_a_reader_pinned_to_schema_2_refuses_a_paused_record(monkeypatch):
    """What a rotator from before pauses does with one: NewerRecordError, so it never acts."""
    data = paused(idle()).to_storage()
    monkeypatch.setattr(record, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(record, "READABLE_SCHEMAS", frozenset({1, 2}))
    with pytest.raises(NewerRecordError, match="Upgrade rotator"):
        Record.from_storage(data)
    assert Record.from_storage(idle().to_storage()).paused is None


@pytest.mark.parametrize(
    "pause", [{"by": "a", "reason": "r"}, {"by": "a", "at": "x", "reason": "r"}]
)
def test_a_damaged_pause_is_a_record_error(pause):
    """A pause without a time, or with one that is no time, is named as damage."""
    data = paused(idle()).to_storage()
    data["paused"] = pause
    with pytest.raises(record.RecordError, match="damaged"):
        Record.from_storage(data)


# --- the property -------------------------------------------------------------------------------


def _phases() -> list[Record]:
    rec, _ = started()
    wait = awaiting()
    return [
        idle(),
        Record(target="web"),
        rec,
        wait,
        replace(wait, phase=Phase.RETIRING, old_ids=("100",), confirmed_at=NOW),
        replace(wait, emergency=True),
        transitions.blocked(wait, "someone changed the path"),
        replace(idle(), retry_at=NOW + timedelta(hours=1), last_error="boom"),
    ]


PHASES = _phases()
NEW = LiveSecret("101", "Production Web · rotator g1 abcdef")
VIEWS = [
    ConsumerView("100", "sha256:old", 3),
    ConsumerView("101", NEW_SECRET.fingerprint(), 4),
    ConsumerView(None, None, None),
    ConsumerView("555", "sha256:stranger", 9),
]
LISTS = [None, (), (OLD,), (OLD, NEW), (NEW,)]


def _results(rec: Record) -> list[Result | None]:
    return [
        None,
        Created("101", rec.planned_name or "x", 1_800_000_000, NEW_SECRET),
        Stored(VIEWS[1]),
        Deleted("100"),
        Failed("boom", permanent=False),
        Failed("gone", permanent=True),
    ]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(range(len(PHASES))),
    st.sampled_from(VIEWS),
    st.sampled_from(LISTS),
    st.booleans(),
    st.sampled_from([None, RotateNow(), RotateNow(emergency=True)]),
    st.integers(0, 6),
    st.integers(0, 5),
    st.booleans(),
)
def test_a_paused_record_never_decides_an_action(
    phase, view, listed, due, command, days, which, emergency
):
    """Whatever the phase, the consumers' path, Intercom's list, the schedule, an operator's
    request, the time or the result of an action decided before the pause: no action."""
    rec = paused(replace(PHASES[phase], emergency=emergency or PHASES[phase].emergency))
    result = _results(rec)[which]
    obs = Observation(
        policy=POLICY,
        consumer=view,
        intercom=listed,
        due=due,
        me="me",
        fresh="abcdef0123456789abcdef01",
        command=command,
    )
    if result is not None:
        obs = absorb(obs, result)
    decision = machine.step(rec, obs, NOW + timedelta(days=days))
    assert decision.action is None
    assert decision.record.paused == PAUSE
    assert decision.record.lease is None
