"""The pure rotation machine: each transition, each safety rule, each refusal (no I/O at all)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rotator.core import machine, transitions
from rotator.core.adoption import in_progress
from rotator.core.confirmation import confirm
from rotator.core.observation import (
    LIST_LAG_TOLERANCE,
    ConsumerView,
    Create,
    Created,
    Delete,
    Deleted,
    Failed,
    LiveSecret,
    Observation,
    Policy,
    RotateNow,
    Store,
    Stored,
    absorb,
    needs_intercom,
)
from rotator.core.record import Binding, Lease, Phase, Record, RecordError, Request
from rotator.redaction import SecretValue

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
POLICY = Policy(
    target="web",
    secret_name="Production Web",
    grace_period=timedelta(hours=1),
    confirmation="hook-or-grace",
)
OLD = LiveSecret("100", "Production Web")
NEW_SECRET = SecretValue("new-material-0123456789abcdefghijklmnopq")


def observe(record: Record, **changes) -> Observation:
    base = Observation(
        policy=POLICY,
        consumer=ConsumerView(intercom_id=record.current_id, fingerprint="sha256:old", version=3),
        intercom=(OLD,),
        due=False,
        me="me",
        fresh="abcdef0123456789abcdef01",
    )
    return replace(base, **changes)


def idle() -> Record:
    return Record(target="web", current_id="100", last_rotation_at=NOW - timedelta(days=31))


def started() -> tuple[Record, str]:
    decision = machine.step(idle(), observe(idle(), due=True), NOW)
    assert isinstance(decision.action, Create)
    return decision.record, decision.action.name


def created() -> Record:
    record, name = started()
    result = Created("101", name, 1_800_000_000, NEW_SECRET)
    decision = machine.step(record, absorb(observe(record), result), NOW)
    return decision.record


def stored_view(record: Record) -> ConsumerView:
    return ConsumerView(
        intercom_id=record.pending_id, fingerprint=NEW_SECRET.fingerprint(), version=4
    )


def live_new(record: Record) -> tuple[LiveSecret, ...]:
    return (OLD, LiveSecret("101", record.planned_name or ""))


def awaiting(**policy_changes) -> Record:
    record = created()
    obs = observe(record, intercom=live_new(record), policy=replace(POLICY, **policy_changes))
    decision = machine.step(record, absorb(obs, Stored(stored_view(record))), NOW)
    assert decision.record.phase is Phase.AWAITING_ROLLOUT
    return decision.record


def in_flight(record: Record, **changes) -> Observation:
    return observe(record, consumer=stored_view(record), intercom=live_new(record), **changes)


def confirmed(record: Record, policy: Policy = POLICY, **kwargs):
    """``confirm`` as the hook or CLI runs it, the consumers' path holding the new secret."""
    args = {"secret_id": "101", "rotation_id": None, "via": "cli", "now": NOW, **kwargs}
    return confirm(record, policy, stored_view(record), **args)


# --- the happy path --------------------------------------------------------------------------


def test_idle_and_not_due_does_nothing_and_holds_no_lease():
    """Nothing due, nothing done, and the record carries no lease."""
    decision = machine.step(idle(), observe(idle()), NOW)
    assert decision.action is None
    assert decision.record.lease is None
    assert "not due" in decision.reason


def test_due_starts_a_rotation_with_a_recorded_unique_name():
    """Starting records the generation, rotation id and exact name before the POST."""
    record, name = started()
    assert record.phase is Phase.CREATING
    assert record.generation == 1
    assert record.rotation_id == "rabcdef012345"
    assert name == "Production Web · rotator g1 cdef01"
    assert record.planned_name == name
    assert name in record.owned_names
    assert record.lease == Lease(holder="me", nonce=record.lease.nonce, ttl=60.0)


def test_created_secret_is_committed_with_its_material_before_storing():
    """The create result goes into the record (the commit point), then a Store follows."""
    record, name = started()
    decision = machine.step(
        record, absorb(observe(record), Created("101", name, 1, NEW_SECRET)), NOW
    )
    assert decision.record.pending_id == "101"
    assert decision.record.pending_secret == NEW_SECRET
    assert decision.action == Store(cas=3)


def test_stored_and_read_back_waits_for_rollout():
    """After the read-back matches, the target awaits rollout with a grace deadline."""
    record = awaiting()
    assert record.deadline == NOW + timedelta(hours=1)
    assert record.stored_at == NOW
    assert record.lease is None


def test_a_read_back_that_does_not_match_is_retried_later():
    """If Vault gives back something else, nothing moves on: backoff and try again."""
    record = created()
    wrong = ConsumerView(intercom_id="101", fingerprint="sha256:other", version=4)
    decision = machine.step(
        record, absorb(observe(record, intercom=live_new(record)), Stored(wrong)), NOW
    )
    assert decision.record.phase is Phase.CREATING
    assert decision.record.attempts == 1
    assert decision.action is None


@pytest.mark.parametrize("via", ["hook:bearer", "cli"])
def test_confirmation_retires_the_old_secret(via):
    """A confirmation for this secret moves to retiring and deletes the old one."""
    record, status, _ = confirmed(awaiting(), via=via)
    assert status == "confirmed"
    decision = machine.step(record, in_flight(record), NOW)
    assert decision.record.phase is Phase.RETIRING
    assert decision.action == Delete("100")


def test_retiring_completes_the_rotation():
    """Once the old secret is deleted the new one is current, history grows, material goes."""
    record, _, _ = confirmed(awaiting())
    retiring = machine.step(record, in_flight(record), NOW).record
    later = NOW + timedelta(minutes=5)
    done = machine.step(retiring, absorb(in_flight(retiring), Deleted("100")), later).record
    assert done.phase is Phase.IDLE
    assert done.current_id == "101"
    assert done.pending_id is None
    assert done.pending_secret is None
    assert done.last_rotation_at == NOW  # the start: the schedule does not drift by the grace
    [entry] = done.history
    assert (entry.new_id, entry.retired_ids, entry.confirmed_by) == ("101", ("100",), "cli")


@pytest.mark.parametrize(
    ("confirmation", "retires"), [("grace", True), ("hook-or-grace", True), ("hook", False)]
)
def test_grace_deadline_by_policy(confirmation, retires):
    """The grace deadline retires the old secret unless the policy waits for the hook only."""
    record = awaiting(confirmation=confirmation)
    policy = replace(POLICY, confirmation=confirmation)
    decision = machine.step(record, in_flight(record, policy=policy), NOW + timedelta(hours=2))
    assert (decision.action == Delete("100")) is retires
    if not retires:
        assert "waiting for the confirmation hook" in decision.reason


def test_before_the_deadline_nothing_is_deleted():
    """Without confirmation and before the deadline, the old secret stays."""
    record = awaiting()
    decision = machine.step(record, in_flight(record), NOW + timedelta(minutes=59))
    assert decision.action is None
    assert decision.record.phase is Phase.AWAITING_ROLLOUT


def test_emergency_retires_as_soon_as_stored():
    """rotate-now --emergency skips the wait once the new secret is stored and read back."""
    record = idle()
    start = machine.step(record, observe(record, command=RotateNow(emergency=True)), NOW)
    result = Created("101", start.action.name, 1, NEW_SECRET)
    committed = machine.step(start.record, absorb(observe(start.record), result), NOW).record
    decision = machine.step(
        committed,
        absorb(observe(committed, intercom=live_new(committed)), Stored(stored_view(committed))),
        NOW,
    )
    assert decision.action == Delete("100")
    assert decision.record.emergency


def test_bootstrap_with_nothing_to_retire_completes_at_once():
    """A target with no secret yet gets one, with nothing to wait for or delete."""
    empty = Record(target="web")
    obs = observe(empty, consumer=ConsumerView(version=0), intercom=(), due=True)
    start = machine.step(empty, obs, NOW)
    made = machine.step(
        start.record, absorb(obs, Created("101", start.action.name, 1, NEW_SECRET)), NOW
    )
    assert made.action == Store(cas=0)
    done = machine.step(
        made.record,
        absorb(replace(obs, intercom=live_new(made.record)), Stored(stored_view(made.record))),
        NOW,
    )
    assert done.record.phase is Phase.IDLE
    assert done.record.current_id == "101"


# --- recovery ------------------------------------------------------------------------------------


def test_an_orphan_is_deleted_then_a_fresh_name_created():
    """A secret under a recorded name, whose material never reached the record, is an orphan."""
    record, name = started()
    orphan = LiveSecret("150", name)
    decision = machine.step(record, observe(record, intercom=(OLD, orphan)), NOW)
    assert decision.action == Delete("150")
    assert "orphan" in decision.reason
    after = machine.step(
        decision.record,
        absorb(observe(decision.record, intercom=(OLD, orphan)), Deleted("150")),
        NOW,
    )
    assert after.record.old_ids == ()
    again = machine.step(after.record, observe(after.record, fresh="ffffff0123456789aaaaaa99"), NOW)
    assert isinstance(again.action, Create)
    assert again.action.name != name
    assert {name, again.action.name} <= set(again.record.owned_names)


def test_an_unnamed_stranger_is_never_an_orphan():
    """A live secret whose name this target never recorded is left alone."""
    record, _ = started()
    stranger = LiveSecret("151", "Production Web · rotator g1 zzzzzz")
    decision = machine.step(record, observe(record, intercom=(OLD, stranger)), NOW)
    assert isinstance(decision.action, Create)


def test_a_committed_secret_a_list_omits_is_stored_not_replaced():
    """A list that does not show the new secret proves nothing (lists lag): its material is
    committed, so it is stored, never judged vanished and created again."""
    record = created()
    decision = machine.step(record, observe(record, intercom=(OLD,)), NOW)
    assert decision.action == Store(cas=3)
    assert decision.record.pending_id == "101"
    assert "101" in decision.record.known_ids


def test_a_resumed_creating_phase_stores_the_committed_secret():
    """After a crash between commit and store, the next pass stores what the record holds."""
    record = created()
    decision = machine.step(record, observe(record, intercom=live_new(record)), NOW)
    assert decision.action == Store(cas=3)


# --- the rules that guard every delete -------------------------------------------------------------


@pytest.mark.parametrize(
    ("consumer", "intercom", "problem"),
    [
        (ConsumerView(intercom_id="100", fingerprint="sha256:old", version=4), None, "holds it"),
        (
            ConsumerView(intercom_id="101", fingerprint="sha256:tampered", version=4),
            None,
            "does not match",
        ),
    ],
)
def test_delete_is_refused_when_a_rule_would_break(consumer, intercom, problem):
    """Consumers still on the old secret, or a mismatched copy of the new one: blocked."""
    record, _, _ = confirmed(awaiting())
    retiring = replace(record, phase=Phase.RETIRING, old_ids=("100",))
    obs = in_flight(retiring)
    obs = replace(obs, consumer=consumer or obs.consumer, intercom=intercom or obs.intercom)
    decision = machine.step(retiring, obs, NOW)
    assert decision.action is None
    assert decision.record.phase is Phase.BLOCKED
    assert problem in decision.record.blocked_reason


def test_a_secret_it_does_not_own_is_never_deleted():
    """An id on old_ids that it neither created, adopted nor held is refused."""
    record, _, _ = confirmed(awaiting())
    foreign = LiveSecret("999", "Somebody else's")
    retiring = replace(record, phase=Phase.RETIRING, old_ids=("999",))
    obs = replace(in_flight(retiring), intercom=(*live_new(retiring), foreign))
    decision = machine.step(retiring, obs, NOW)
    assert decision.action is None
    assert "did not create or adopt" in decision.record.blocked_reason


def test_an_adopted_secret_may_be_retired():
    """Ids listed in the target's adopt setting count as its own."""
    record, _, _ = confirmed(awaiting())
    adopted = LiveSecret("77", "Legacy")
    retiring = replace(record, phase=Phase.RETIRING, old_ids=("77",))
    obs = replace(
        in_flight(retiring),
        intercom=(*live_new(retiring), adopted),
        policy=replace(POLICY, adopt=("77",)),
    )
    assert machine.step(retiring, obs, NOW).action == Delete("77")


def test_unconfirmed_rotation_never_deletes():
    """Even with retiring forced into the record, nothing is deleted before confirm or grace."""
    retiring = replace(awaiting(), phase=Phase.RETIRING, old_ids=("100",))
    decision = machine.step(retiring, in_flight(retiring), NOW)
    assert decision.action is None
    assert "neither confirmed nor past its grace" in decision.record.blocked_reason


def test_consumers_path_changed_during_rollout_blocks():
    """If someone rewrites the consumers' path mid-rotation, rotator stops and says why."""
    record = awaiting()
    obs = replace(
        in_flight(record), consumer=ConsumerView(intercom_id="100", fingerprint="x", version=9)
    )
    decision = machine.step(record, obs, NOW)
    assert decision.record.phase is Phase.BLOCKED
    assert "no longer holds the new secret" in decision.record.blocked_reason


# --- failures, backoff, blocking, leases --------------------------------------------------------


def test_permanent_failure_blocks_and_rotate_now_resumes():
    """A permanent error blocks with its reason; rotate-now resumes where it stopped."""
    record, _ = started()
    blocked = machine.step(
        record, observe(record, result=Failed("401 token revoked", permanent=True)), NOW
    ).record
    assert blocked.phase is Phase.BLOCKED
    assert blocked.resume_phase is Phase.CREATING
    assert machine.step(blocked, observe(blocked, due=True), NOW).action is None
    resumed = machine.step(blocked, observe(blocked, command=RotateNow()), NOW)
    assert resumed.record.phase is Phase.CREATING
    assert isinstance(resumed.action, Create)


def test_temporary_failures_back_off_exponentially():
    """Each consecutive temporary failure doubles the wait; the wait is honoured."""
    record, _ = started()
    waits = []
    for _ in range(4):
        record = machine.step(
            record, observe(record, result=Failed("503", permanent=False)), NOW
        ).record
        waits.append(record.retry_at - NOW)
    assert waits == [timedelta(seconds=s) for s in (10, 20, 40, 80)]
    assert machine.step(record, observe(record), NOW + timedelta(seconds=79)).action is None
    assert machine.step(record, observe(record), NOW + timedelta(seconds=81)).action is not None


def test_a_server_requested_delay_is_respected():
    """Retry-After beyond the backoff wins."""
    record, _ = started()
    failed = machine.step(
        record, observe(record, result=Failed("429", permanent=False, delay=600)), NOW
    ).record
    assert failed.retry_at == NOW + timedelta(seconds=600)


def test_a_live_lease_of_another_process_stops_actions():
    """With someone else's live lease nothing is done."""
    record = replace(idle(), lease=Lease("other", "n1", 60))
    decision = machine.step(record, observe(record, due=True, lease_free=False), NOW)
    assert decision.action is None
    assert "other holds the lease" in decision.reason


def test_rotate_now_joins_a_rotation_in_progress():
    """rotate-now during a rotation starts nothing new."""
    record = awaiting()
    decision = machine.step(record, in_flight(record, command=RotateNow()), NOW)
    assert decision.record.rotation_id == record.rotation_id
    assert decision.record.generation == record.generation
    assert decision.action is None


# --- confirmations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"secret_id": "101"}, "confirmed"),
        ({"rotation_id": "rabcdef012345"}, "confirmed"),
        ({"secret_id": "100"}, "wrong_secret"),
        ({"rotation_id": "rother"}, "wrong_secret"),
        ({"secret_id": "100", "rotation_id": "rabcdef012345"}, "wrong_secret"),
    ],
)
def test_confirm_must_name_the_pending_secret_or_rotation(kwargs, status):
    """Only a confirmation naming this rotation's secret (or id) counts."""
    args = {"secret_id": None, "rotation_id": None, **kwargs}
    record, got, _ = confirmed(awaiting(), via="hook:bearer", **args)
    assert got == status
    assert (record is not None) is (status == "confirmed")


def test_confirm_refusals():
    """Not awaiting, grace-only policy, and repeats are refused without a change."""
    assert confirmed(idle(), secret_id="100")[1] == "not_awaiting"
    grace = replace(POLICY, confirmation="grace")
    assert confirmed(awaiting(), grace)[1] == "policy_refuses"
    once, _, _ = confirmed(awaiting())
    again, status, _ = confirmed(once)
    assert (again, status) == (None, "already_confirmed")


# --- gathering and storage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "due", "command", "expected"),
    [
        (None, False, None, True),
        (idle(), False, None, False),
        (idle(), True, None, True),
        (idle(), False, RotateNow(), True),
        (Record(target="web", phase=Phase.BLOCKED), True, None, False),
        (
            Record(target="web", phase=Phase.AWAITING_ROLLOUT, deadline=NOW + timedelta(hours=1)),
            False,
            None,
            False,
        ),
        (Record(target="web", phase=Phase.AWAITING_ROLLOUT, deadline=NOW), False, None, True),
        (Record(target="web", phase=Phase.CREATING), False, None, True),
    ],
)
def test_intercom_is_listed_only_when_a_decision_needs_it(record, due, command, expected):
    """Idle and waiting targets cost no Intercom call."""
    assert needs_intercom(record, due=due, command=command, now=NOW) is expected


def test_record_round_trips_through_storage_with_its_material():
    """to_storage/from_storage keep every field; the material comes back as a SecretValue."""
    record, _, _ = confirmed(awaiting())
    stored = record.to_storage()
    assert stored["pending_secret"] == NEW_SECRET.reveal()
    assert Record.from_storage(stored) == record
    assert NEW_SECRET.reveal() not in repr(record)


def test_unknown_schema_or_damage_is_refused_without_quoting_material():
    """A record from another version, or a damaged one, is an error that shows no secret."""
    data = created().to_storage()
    with pytest.raises(RecordError, match="schema_version 99"):
        Record.from_storage({**data, "schema_version": 99})
    with pytest.raises(RecordError, match="damaged") as caught:
        Record.from_storage({**data, "phase": "exploded"})
    assert NEW_SECRET.reveal() not in str(caught.value)


# --- lagging lists, shared clocks, durable requests, workspaces (issue 9) ----------------------


def test_retiring_deletes_the_old_secret_even_when_the_list_omits_it():
    """Absence from a list proves nothing: the old secret gets its DELETE, and only Intercom's
    answer (204 or 404) takes it off the list of secrets to retire."""
    record, _, _ = confirmed(awaiting())
    decision = machine.step(record, replace(in_flight(record), intercom=()), NOW)
    assert decision.action == Delete("100")
    lost = machine.step(
        decision.record, in_flight(decision.record, result=Failed("timeout", permanent=False)), NOW
    )
    assert lost.record.old_ids == ("100",), "a lost answer leaves the secret to retire"
    done = machine.step(decision.record, absorb(in_flight(decision.record), Deleted("100")), NOW)
    assert done.record.history[-1].retired_ids == ("100",)


def test_history_names_only_secrets_intercom_said_are_gone():
    """retired_ids holds exactly the ids whose DELETE was answered, orphans included."""
    record, name = started()
    orphan = LiveSecret("150", name)
    swept = machine.step(record, observe(record, intercom=(OLD, orphan)), NOW)
    after = machine.step(
        swept.record, absorb(observe(swept.record, intercom=(OLD, orphan)), Deleted("150")), NOW
    )
    assert after.record.retired_ids == ("150",)
    assert isinstance(after.action, Create)


def test_a_confirmation_is_void_once_the_secret_is_stored_again():
    """Storing again (after a block) clears the confirmation recorded for the earlier store."""
    record, _, _ = confirmed(awaiting())
    assert record.confirmed_at is not None
    moved = replace(in_flight(record), consumer=ConsumerView(intercom_id="100", version=9))
    blocked = machine.step(record, moved, NOW).record
    assert blocked.phase is Phase.BLOCKED
    resumed = machine.step(blocked, replace(moved, command=RotateNow()), NOW)
    assert resumed.record.phase is Phase.CREATING
    assert resumed.record.confirmed_at is None
    assert resumed.action == Store(cas=9)
    restored = machine.step(
        resumed.record, absorb(in_flight(resumed.record), Stored(stored_view(record))), NOW
    )
    assert restored.action is None, "the old secret was retired on a stale confirmation"
    assert restored.record.phase is Phase.AWAITING_ROLLOUT


def test_a_confirmation_before_the_store_is_refused():
    """In creating, with the consumers' path still on the old secret, confirm changes nothing."""
    record = created()
    old_view = observe(record).consumer
    updated, status, message = confirm(
        record, POLICY, old_view, secret_id="101", rotation_id=None, via="cli", now=NOW
    )
    assert (updated, status) == (None, "not_awaiting")
    assert "not at the consumers' Vault path yet" in message


def test_a_store_not_yet_recorded_is_recorded_by_the_confirmation():
    """If the consumers' path already holds the new secret (its writer died before recording
    it), confirm records the store, then the confirmation, in one record."""
    record = created()
    updated, status, _ = confirm(
        record, POLICY, stored_view(record), secret_id="101", rotation_id=None, via="c", now=NOW
    )
    assert status == "confirmed"
    assert updated is not None
    assert updated.phase is Phase.AWAITING_ROLLOUT
    assert (updated.stored_at, updated.confirmed_at) == (NOW, NOW)


def test_the_deadline_is_the_grace_after_the_store_on_the_clock_passed_in():
    """The grace runs from the store's read-back on the clock passed in (Vault's), and is
    judged on that clock again."""
    record = created()
    at = NOW - timedelta(minutes=10)
    waiting = machine.step(
        record, absorb(in_flight(record), Stored(stored_view(record))), at
    ).record
    assert waiting.deadline == at + POLICY.grace_period
    early = machine.step(waiting, in_flight(waiting), at + timedelta(minutes=59))
    assert early.action is None
    late = machine.step(waiting, in_flight(waiting), at + timedelta(minutes=60))
    assert late.action == Delete("100")
    assert late.record.confirmed_by == "grace"


def test_a_request_in_the_record_is_served_by_any_pass():
    """A rotate-now recorded by a process that then failed is served by the next pass of any
    process, emergency included, once any backoff is over."""
    asked = replace(
        idle(),
        request=Request(emergency=True, by="cli", at=NOW, leaked="100"),
        attempts=1,
        retry_at=NOW + timedelta(seconds=10),
        last_error="503",
    )
    assert needs_intercom(asked, due=False, command=None, now=NOW) is False
    waiting = machine.step(asked, observe(asked), NOW)
    assert waiting.action is None
    assert waiting.record.request is not None
    later = NOW + timedelta(seconds=11)
    assert needs_intercom(asked, due=False, command=None, now=later)
    served = machine.step(asked, observe(asked), later)
    assert isinstance(served.action, Create)
    assert served.record.emergency
    assert served.record.request is None


def test_a_request_during_a_rotation_joins_it():
    """A recorded emergency request during a rotation makes that rotation retire at once."""
    record = replace(awaiting(), request=Request(emergency=True, by="cli", at=NOW, leaked="100"))
    decision = machine.step(record, in_flight(record), NOW)
    assert decision.action == Delete("100")
    assert decision.record.request is None
    assert decision.record.generation == 1


def test_the_binding_is_stamped_on_every_record_written():
    """Every record a pass writes carries the workspace of the process that wrote it."""
    mine = Binding("https://api.intercom.io", "token:abc")
    decision = machine.step(idle(), observe(idle(), due=True, binding=mine), NOW)
    assert decision.record.binding == mine


def test_a_blocked_adoption_resumes_or_gives_way_to_a_rotation():
    """An adoption blocked because consumers no longer hold its secret: rotate-now drops it and
    starts a rotation (it never asks to store material the record does not have)."""
    adopting = transitions.adopting(
        idle(),
        "77",
        now=NOW,
        grace=timedelta(hours=1),
        rotation_id="adopt-1",
        version=3,
        fingerprint=None,
    )
    blocked = transitions.blocked(adopting, "consumers' path changed")
    obs = observe(blocked, intercom=(OLD, LiveSecret("77", "Legacy")), command=RotateNow())
    decision = machine.step(blocked, obs, NOW)
    assert isinstance(decision.action, Create)
    assert "77" in decision.record.known_ids
    assert not decision.record.adoption


def test_the_consumers_secret_missing_from_one_list_is_not_drift():
    """rotate_on_drift rotates only once the consumers' secret has stayed unlisted longer than
    lists lag; one list that omits it starts nothing."""
    policy = replace(POLICY, watch_drift=True)
    first = machine.step(idle(), observe(idle(), intercom=(), policy=policy), NOW)
    assert first.action is None
    assert first.record.consumer_absent_since == NOW
    soon = NOW + LIST_LAG_TOLERANCE - timedelta(seconds=1)
    assert (
        machine.step(first.record, observe(first.record, intercom=(), policy=policy), soon).action
        is None
    )
    late = NOW + LIST_LAG_TOLERANCE
    rotated = machine.step(first.record, observe(first.record, intercom=(), policy=policy), late)
    assert isinstance(rotated.action, Create)
    seen = machine.step(first.record, observe(first.record, policy=policy), soon)
    assert seen.record.consumer_absent_since is None


def test_a_new_secret_unlisted_for_long_blocks_the_retirement():
    """The new secret missing from lists for longer than they lag blocks (was it deleted?);
    missing from one list changes nothing."""
    record, _, _ = confirmed(awaiting())
    blind = replace(in_flight(record), intercom=(OLD,))
    once = machine.step(record, blind, NOW)
    assert once.action == Delete("100")
    stale = replace(record, pending_absent_since=NOW - LIST_LAG_TOLERANCE)
    decision = machine.step(stale, blind, NOW)
    assert decision.record.phase is Phase.BLOCKED
    assert "has not listed the new secret" in decision.record.blocked_reason


def test_a_record_of_the_previous_schema_is_read():
    """A version 1 record (before requests and bindings) is read as unbound, nothing asked."""
    data = created().to_storage()
    for key in ("request", "binding", "adoption", "retired_ids", "pending_absent_since"):
        data.pop(key)
    data["schema_version"] = 1
    record = Record.from_storage(data)
    assert record.binding is None
    assert record.request is None
    assert record.pending_id == "101"


def test_a_path_written_again_restarts_the_rollout_and_voids_the_confirmation():
    """The consumers' path rewritten since the store, even with the same secret (a backup
    restored, then the new value put back), voids the confirmation: the rollout starts again."""
    record, _, _ = confirmed(awaiting())
    rewritten = replace(in_flight(record), consumer=replace(stored_view(record), version=7))
    decision = machine.step(record, rewritten, NOW + timedelta(minutes=1))
    assert decision.action is None
    assert decision.record.confirmed_at is None
    assert decision.record.stored_version == 7
    assert decision.record.deadline == NOW + timedelta(minutes=1) + POLICY.grace_period


def test_a_retirement_blocked_by_a_restored_backup_stores_again_on_resume():
    """Retiring, a DELETE failed, a backup put the old secret back at the consumers' path: the
    target blocks; on rotate-now the new secret is stored again and waits for a new rollout."""
    record, _, _ = confirmed(awaiting())
    retiring = machine.step(record, in_flight(record), NOW).record
    assert retiring.phase is Phase.RETIRING
    restored = replace(
        in_flight(retiring), consumer=ConsumerView("100", fingerprint="sha256:old", version=8)
    )
    blocked = machine.step(retiring, restored, NOW).record
    assert blocked.phase is Phase.BLOCKED
    resumed = machine.step(blocked, replace(restored, command=RotateNow()), NOW)
    assert resumed.action == Store(cas=8)
    assert resumed.record.confirmed_at is None
    assert resumed.record.old_ids == ("100",)


def test_an_emergency_about_a_secret_since_replaced_is_an_ordinary_request():
    """An emergency recorded while another secret was current (since adopted over, say) rotates
    without deleting the current one at once: the leak is no longer what consumers hold."""
    record = replace(idle(), request=Request(emergency=True, by="cli", at=NOW, leaked="42"))
    started = machine.step(record, observe(record), NOW)
    assert isinstance(started.action, Create)
    assert not started.record.emergency


def test_an_adoption_replaces_only_an_adoption_still_awaiting_its_rollout():
    """A second adoption may replace one awaiting its rollout, never one that retires or one an
    operator made an emergency: replacing it forgot the leaked secret it was retiring, which
    stayed current. Found by the simulation (an emergency, then a second `adopt`)."""
    adopting = transitions.adopting(
        idle(),
        "77",
        now=NOW,
        grace=timedelta(hours=1),
        rotation_id="adopt-1",
        version=3,
        fingerprint=None,
    )
    assert in_progress(adopting) is None
    emergency = replace(adopting, emergency=True)
    retiring = replace(emergency, phase=Phase.RETIRING, old_ids=(emergency.current_id,))
    blocked = transitions.blocked(retiring, "Intercom refused")
    for refused in (emergency, retiring, blocked):
        problem = in_progress(refused)
        assert problem is not None
        assert "adopt-1" in problem


def test_a_request_waiting_behind_a_blocked_back_out_resumes_it_once_not_every_pass():
    """A rotate-now cannot join a back-out: it waits in the record. Served from the record (the
    asking process gone), it resumes a blocked back-out once; if that blocks again, later passes
    rest blocked until an operator's next command, instead of resuming and re-blocking it (Intercom
    calls and a record write) every pass. An operator's command still resumes it."""
    from rotator.core.record import Restoring

    backing_out = replace(
        awaiting(),
        restoring=Restoring(rotation_id="r-old", by="alice", at=NOW, reason="bad secret"),
        request=Request(emergency=False, by="bob", at=NOW),
    )
    blocked = transitions.blocked(backing_out, "Intercom refused: missing scope")
    first = machine.step(blocked, in_flight(blocked), NOW)
    assert first.record.phase is not Phase.BLOCKED  # served from the record: resumed once
    assert first.record.request is not None  # still waiting behind the back-out
    again = transitions.blocked(first.record, "Intercom refused: missing scope")
    rest = machine.step(again, in_flight(again), NOW)
    assert rest.record.phase is Phase.BLOCKED
    assert rest.action is None
    assert rest.record.request == again.request  # not lost: served once the back-out ends
    asked = machine.step(again, in_flight(again, command=RotateNow()), NOW)
    assert asked.record.phase is not Phase.BLOCKED


def test_a_spent_request_is_kept_in_storage_and_a_new_rotate_now_may_resume_again():
    """The mark survives Vault (written only when set: other records are stored as before), the
    quiet daemon sets no wakeup for such a block, and a new rotate-now recorded over a waiting
    emergency makes a fresh ask that may resume it once more."""
    from rotator.core.wakeups import next_wakeup

    spent = Request(emergency=True, by="bob", at=NOW, leaked="100", resumed=True)
    record = transitions.blocked(replace(awaiting(), request=spent), "refused")
    stored = record.to_storage()
    assert stored["request"]["resumed"] is True
    assert Record.from_storage(stored).request == spent
    fresh = replace(record, request=replace(spent, resumed=False))
    assert "resumed" not in fresh.to_storage()["request"]
    wake = next_wakeup(record, POLICY, NOW, due_at=None, window=None, poll=timedelta(minutes=1))
    assert wake is None  # blocked: an operator's command
    again = transitions.requested(record, Request(emergency=False, by="carol", at=NOW))
    assert again.request is not None
    assert again.request.emergency  # the emergency about the current secret stands...
    assert not again.request.resumed  # ...as a fresh ask
