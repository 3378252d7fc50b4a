"""Verified rollout in the pure core (issue 12): named consumers, probe streaks, stalls.

Proves, with no I/O: a probed consumer is confirmed only after ``stable_probes`` spaced rounds
with every instance on the new secret (and enough instances); a probe confirmation is voided by
the next round that sees an instance behind, while a hook or operator confirmation stands; a
grace deadline never retires a secret a probe still sees in use (the rollout is **stalled**,
saying who); two hook consumers need both; progress is bound to the store and reset by every
transition that must reset it; records are written as schema 2 unless they carry progress; a
target without consumers decides exactly as before (``tests/test_machine.py`` is unchanged).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_machine import NEW_SECRET, NOW, POLICY, created, in_flight, live_new, observe

from rotator.core import machine, rollout, transitions
from rotator.core.confirmation import ConfirmStatus, confirm
from rotator.core.observation import (
    ConsumerProbe,
    ConsumerRule,
    ConsumerView,
    Delete,
    InstanceAnswer,
    Policy,
    absorb,
    needs_intercom,
    needs_probes,
)
from rotator.core.record import (
    BASE_SCHEMA_VERSION,
    ROLLOUT_SCHEMA_VERSION,
    NewerRecordError,
    Phase,
    Record,
)
from rotator.core.safety import rolled_out, unsafe_to_delete
from rotator.signing import probe_fingerprint

FP = probe_fingerprint(NEW_SECRET.reveal())
WEB = ConsumerRule("web-backend", probed=True, stable_probes=2)
BILLING = ConsumerRule("billing", probed=False)
LEDGER = ConsumerRule("ledger", probed=False)
SPACING = timedelta(seconds=10)


def policy(*rules: ConsumerRule, confirmation: str = "consumers") -> Policy:
    return replace(POLICY, consumers=rules, confirmation=confirmation, probe_spacing=SPACING)  # type: ignore[arg-type]


def view(record: Record) -> ConsumerView:
    return ConsumerView(
        intercom_id=record.pending_id,
        fingerprint=NEW_SECRET.fingerprint(),
        version=4,
        probe_fingerprint=FP,
    )


def awaiting(pol: Policy) -> Record:
    record = created()
    obs = observe(record, intercom=live_new(record), policy=pol, consumer=view(record))
    from rotator.core.observation import Stored

    decision = machine.step(record, absorb(obs, Stored(view(record))), NOW)
    assert decision.record.phase is Phase.AWAITING_ROLLOUT
    return decision.record


def probe(*answers: tuple[str, str | None], consumer: str = "web-backend", fp: str | None = FP):
    """One round: ``(address, id or None for no answer)`` per instance."""
    return ConsumerProbe(
        consumer,
        tuple(
            InstanceAnswer(a, intercom_id=i, fingerprint=fp if i == "101" else None)
            if i is not None
            else InstanceAnswer(a, error="timed out")
            for a, i in answers
        ),
    )


def step(record: Record, pol: Policy, at, *probes: ConsumerProbe, **changes):
    obs = replace(in_flight(record), policy=pol, consumer=view(record), probes=probes, **changes)
    return machine.step(record, obs, at)


ALL_NEW = (("10.0.0.1:80", "101"), ("10.0.0.2:80", "101"), ("10.0.0.3:80", "101"))


# --- probed consumers ------------------------------------------------------------------------


def test_a_probed_consumer_needs_stable_spaced_rounds_before_the_old_secret_goes():
    """One all-switched round is not enough; a second one a second later does not count (not
    spaced); the second spaced round confirms, and the same step retires the old secret."""
    pol = policy(WEB)
    record = awaiting(pol)
    first = step(record, pol, NOW, probe(*ALL_NEW))
    assert first.action is None
    assert "web-backend 3/3 switched" in first.reason
    soon = step(first.record, pol, NOW + timedelta(seconds=1), probe(*ALL_NEW))
    assert soon.action is None
    assert rollout.progress(soon.record, "web-backend").streak == 1
    later = step(soon.record, pol, NOW + SPACING, probe(*ALL_NEW))
    assert later.action == Delete("100")
    assert later.record.confirmed_by == transitions.BY_CONSUMERS


def test_one_instance_behind_resets_the_streak_and_voids_a_probe_confirmation():
    """An instance back on the old id (a rollback, a new replica) voids what probes confirmed."""
    pol = policy(WEB, BILLING)
    record = awaiting(pol)
    record = step(record, pol, NOW, probe(*ALL_NEW)).record
    record = step(record, pol, NOW + SPACING, probe(*ALL_NEW)).record
    assert rollout.confirmed(record, "web-backend")  # billing still missing: nothing retired
    behind = (*ALL_NEW[:2], ("10.0.0.4:80", "100"))
    regressed = step(record, pol, NOW + 2 * SPACING, probe(*behind))
    entry = rollout.progress(regressed.record, "web-backend")
    assert not rollout.confirmed(regressed.record, "web-backend")
    assert (entry.streak, entry.found, entry.switched, entry.in_use) == (0, 3, 2, ("100",))
    assert "10.0.0.4:80 on 100" in regressed.reason


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        ((("a:1", "101"), ("b:1", None)), "b:1: timed out"),
        ((("a:1", "101"), ("b:1", "100")), "b:1 on 100"),
        ((), "0 instance(s) found, at least 1 needed"),
    ],
)
def test_no_answer_another_id_or_nobody_found_is_not_switched(answers, why):
    """An instance that does not answer, answers the old id, or a consumer with no instance at
    all: not switched, however many rounds pass."""
    pol = policy(WEB)
    record = awaiting(pol)
    for i in range(4):
        decision = step(record, pol, NOW + i * SPACING, probe(*answers))
        record = decision.record
        assert decision.action is None
    assert why in decision.reason


def test_a_wrong_or_missing_required_fingerprint_is_not_switched():
    """The new id with other material (or none when required) is behind, named as such."""
    strict = replace(WEB, require_fingerprint=True)
    pol = policy(strict)
    record = awaiting(pol)
    wrong = probe(("a:1", "101"), fp="0" * 32)
    missing = probe(("a:1", "101"), fp=None)
    for i, round_ in enumerate((wrong, missing, wrong, missing)):
        decision = step(record, pol, NOW + i * SPACING, round_)
        record = decision.record
        assert decision.action is None
    assert "fingerprint does not match" in rollout.behind_text(
        step(record, pol, NOW, wrong).record, pol
    )


def test_min_instances_holds_a_scaled_down_consumer():
    """Fewer instances than min_instances never confirm, even when all of them switched."""
    pol = policy(replace(WEB, min_instances=3))
    record = awaiting(pol)
    for i in range(3):
        decision = step(record, pol, NOW + i * SPACING, probe(*ALL_NEW[:2]))
        record = decision.record
    assert decision.action is None
    assert "at least 3 needed" in decision.reason


# --- grace and stalls ------------------------------------------------------------------------


def test_grace_never_retires_past_a_probed_consumer_and_the_rollout_stalls():
    """hook-or-grace past its deadline: a probe sees the old secret, so nothing is deleted, the
    rollout is marked stalled with who is behind; once the probes agree the grace retires it."""
    pol = policy(WEB, BILLING, confirmation="hook-or-grace")
    record = awaiting(pol)
    late = record.deadline + timedelta(seconds=1)
    stuck = step(record, pol, late, probe(("10.0.0.9:80", "100")))
    assert stuck.action is None
    assert stuck.record.stalled_at == late
    assert "stalled" in stuck.reason
    assert "10.0.0.9:80 on 100" in stuck.reason
    assert rolled_out(stuck.record, pol, late) is None
    again = step(stuck.record, pol, late + SPACING, probe(("10.0.0.9:80", "100")))
    assert again.record.stalled_at == late  # set once, not moved by every pass
    record = step(again.record, pol, late + 2 * SPACING, probe(*ALL_NEW)).record
    done = step(record, pol, late + 3 * SPACING, probe(*ALL_NEW))
    assert done.action == Delete("100")  # billing (hook) is covered by the grace
    assert done.record.confirmed_by == transitions.BY_GRACE


def test_consumers_policy_waits_for_hook_consumers_past_the_grace():
    """Under "consumers" a deadline retires nothing: a hook consumer that never calls stalls."""
    pol = policy(BILLING)
    record = awaiting(pol)
    decision = step(record, pol, record.deadline + timedelta(days=3))
    assert decision.action is None
    assert "billing has not confirmed" in decision.reason
    assert decision.record.stalled_at is not None


def test_two_hook_consumers_need_both_and_unknown_or_missing_names_are_refused():
    """One hook consumer's confirmation is not enough; an unknown name, no name, or a probed
    consumer through the hook is refused with nothing changed."""
    pol = policy(BILLING, LEDGER, WEB)
    record = awaiting(pol)

    def call(name, via="hook:bearer"):
        return confirm(
            record, pol, view(record), secret_id="101", rotation_id=None, via=via, now=NOW,
            consumer_name=name,
        )  # fmt: skip

    assert call(None)[:2] == (None, ConfirmStatus.CONSUMER_REQUIRED)
    assert call("nope")[:2] == (None, ConfirmStatus.UNKNOWN_CONSUMER)
    assert call("web-backend")[:2] == (None, ConfirmStatus.PROBED_CONSUMER)
    record, status, _ = call("billing")
    assert status is ConfirmStatus.CONFIRMED
    assert step(record, pol, NOW + SPACING).action is None
    assert call("billing")[1] is ConfirmStatus.ALREADY_CONFIRMED
    record, status, _ = call("ledger")
    assert step(record, pol, NOW + SPACING).action is None  # web-backend has no probe yet
    record, status, _ = call("web-backend", via="cli")  # the operator's override
    assert status is ConfirmStatus.CONFIRMED
    assert step(record, pol, NOW + SPACING).action == Delete("100")


def test_an_operator_confirmation_survives_probes_that_disagree():
    """An operator confirmed a probed consumer: the next rounds still update its summary but do
    not void it, and the delete is not refused by seen_in_use."""
    pol = policy(WEB)
    record = awaiting(pol)
    record, _status, _ = confirm(
        record, pol, view(record), secret_id="101", rotation_id=None, via="cli", now=NOW,
        consumer_name="web-backend",
    )  # fmt: skip
    decision = step(record, pol, NOW, probe(("a:1", "100")))
    assert decision.action == Delete("100")


def test_seen_in_use_refuses_a_delete_whatever_the_record_says():
    """A record claiming a probe confirmation (a stale write, a bug) does not delete a secret a
    probe in this pass sees in use."""
    pol = policy(WEB)
    record = awaiting(pol)
    entry = rollout.entry_for(record, "web-backend")
    record = transitions.consumer_confirmed(record, entry, at=NOW, by="probes")
    record = transitions.retiring(transitions.confirmed(record, at=NOW, by="consumers"), ("100",))
    obs = replace(
        in_flight(record), policy=pol, consumer=view(record), probes=(probe(("a:1", "100")),)
    )
    assert "still using it" in unsafe_to_delete(record, obs, "100", NOW)


# --- binding to the store, resets, storage ---------------------------------------------------


def test_progress_of_another_store_reads_as_unconfirmed():
    """An entry for another stored version (a stale write) confirms nothing."""
    pol = policy(BILLING)
    record = awaiting(pol)
    entry = rollout.entry_for(record, "billing")
    stale = replace(entry, stored_version=entry.stored_version - 1)
    record = transitions.consumer_confirmed(record, stale, at=NOW, by="hook:bearer")
    assert rollout.unconfirmed(record, pol) == ("billing",)


@pytest.mark.parametrize(
    "reset",
    [
        transitions.store_again,
        lambda r: transitions.stored(r, at=NOW, grace=timedelta(hours=1), version=9),
        transitions.rested,
        lambda r: transitions.start_rotation(r, rotation_id="r2", now=NOW, emergency=False),
    ],
)
def test_every_store_and_rest_clears_progress_and_the_stall(reset):
    """A confirmation is of one store: storing again, finishing or starting over clears it."""
    record = _with_progress()
    after = reset(record)
    assert after.rollout == ()
    assert after.stalled_at is None


def test_unblocking_keeps_hook_confirmations_and_voids_probe_ones():
    """A blocked rollout that resumes keeps what people confirmed, judges probes again."""
    record = _with_progress()
    resumed = transitions.unblocked(transitions.blocked(record, "x"))
    by = {p.name: (p.confirmed_by, p.streak) for p in resumed.rollout}
    assert by == {"billing": ("hook:bearer", 0), "web-backend": (None, 0)}
    assert resumed.stalled_at is None


def test_records_without_progress_stay_schema_2_and_with_it_round_trip_as_3():
    """Older rotators keep reading every record but a consumers rollout, which they refuse."""
    plain = awaiting(POLICY)
    assert plain.to_storage()["schema_version"] == BASE_SCHEMA_VERSION
    assert "rollout" not in plain.to_storage()
    record = _with_progress()
    data = record.to_storage()
    assert data["schema_version"] == ROLLOUT_SCHEMA_VERSION
    assert Record.from_storage(data) == record
    assert Record.from_storage(plain.to_storage()) == plain
    with pytest.raises(NewerRecordError):
        Record.from_storage({**data, "schema_version": ROLLOUT_SCHEMA_VERSION + 9})


def test_probes_and_lists_are_gathered_only_while_a_consumers_rollout_waits():
    """Idle targets are not probed; an awaiting consumers target is listed every pass."""
    pol = policy(WEB)
    record = awaiting(pol)
    assert needs_probes(record, pol, now=NOW)
    assert not needs_probes(record, policy(BILLING), now=NOW)
    assert not needs_probes(transitions.rested(record), pol, now=NOW)
    assert not needs_probes(replace(record, emergency=True), pol, now=NOW)
    assert needs_intercom(record, due=False, command=None, now=NOW, consumers=True)
    assert not needs_intercom(record, due=False, command=None, now=NOW)


def _with_progress() -> Record:
    pol = policy(WEB, BILLING)
    record = awaiting(pol)
    record = step(record, pol, NOW, probe(*ALL_NEW)).record
    record = step(record, pol, NOW + SPACING, probe(*ALL_NEW)).record
    record, _, _ = confirm(
        record, pol, view(record), secret_id="101", rotation_id=None, via="hook:bearer", now=NOW,
        consumer_name="billing",
    )  # fmt: skip
    return transitions.stalled(record, at=NOW)


# --- the property ----------------------------------------------------------------------------

ROUNDS = st.lists(
    st.tuples(
        st.integers(0, 30),  # seconds after the previous round
        st.lists(st.sampled_from(["101", "100", None]), min_size=0, max_size=3),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(ROUNDS, st.sampled_from(["consumers", "hook-or-grace", "grace"]))
def test_never_rolled_out_while_the_latest_probe_sees_an_instance_behind(rounds, confirmation):
    """Whatever the rounds, policy and timing (past the grace too): after a round in which some
    instance is behind, the record never says the rollout is done."""
    pol = policy(replace(WEB, stable_probes=1), confirmation=confirmation)
    record = awaiting(pol)
    at = NOW
    for gap, ids in rounds:
        at += timedelta(seconds=gap) + (timedelta(hours=2) if gap == 30 else timedelta(0))
        answers = tuple((f"10.0.0.{i}:80", x) for i, x in enumerate(ids))
        decision = step(record, pol, at, probe(*answers))
        behind = not ids or any(x != "101" for x in ids)
        if behind:
            assert decision.action is None
            assert rolled_out(decision.record, pol, at) is None
        if decision.action is not None:
            return  # retiring: the property ends with the rollout
        record = decision.record
