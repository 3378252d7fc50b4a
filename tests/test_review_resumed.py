"""Review of d74cca1 (a request waiting behind a blocked back-out resumes it once): an operator's
new rotate-now over a spent request is persisted as a fresh ask (PRODUCT.md rule 3); the mark
harms no request once the back-out ends; a spent request costs no Intercom call per pass, and a
resume that fails at its list is spent too (no wakeup at every poll)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

from simulation.actors import Commands, Process
from simulation.world import STATE, World
from test_abort_core import OLD_SECRET, asked, history, on_new
from test_machine import NOW, OLD, POLICY, awaiting, in_flight, observe

from rotator.core import machine, transitions
from rotator.core.observation import (
    ConsumerView,
    Create,
    Delete,
    Deleted,
    Failed,
    RotateNow,
    Stored,
    absorb,
    needs_intercom,
)
from rotator.core.record import Phase, Record, Request, Restoring
from rotator.core.wakeups import next_wakeup


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


def test_a_spent_request_starts_its_rotation_once_the_back_out_ends():
    """A rotate-now waiting behind a back-out resumes its block once (marked), the back-out's
    rollout ends and its abandoned secret is deleted: the request is still there, unharmed by
    the mark, and the next pass starts its rotation and consumes it (no mark left behind)."""
    rec = asked(awaiting())
    back = machine.step(rec, on_new(rec, history=history()), NOW).record
    restored = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)
    waiting = machine.step(back, absorb(on_new(back, consumer=restored), Stored(restored)), NOW)
    request = Request(emergency=False, by="bob", at=NOW)
    blocked = transitions.blocked(replace(waiting.record, request=request), "missing scope")
    first = machine.step(blocked, on_new(blocked, consumer=restored), NOW)
    assert first.record.phase is Phase.AWAITING_ROLLOUT
    assert first.record.request is not None
    assert first.record.request.resumed
    past = NOW + timedelta(hours=2)
    minute = timedelta(minutes=1)
    wake = next_wakeup(first.record, POLICY, NOW, due_at=None, window=None, poll=minute)
    assert wake is None or wake.reason != "request"  # waits for the back-out's own times
    retire = machine.step(first.record, on_new(first.record, consumer=restored), past)
    assert retire.action == Delete("101")
    done = machine.step(
        retire.record, absorb(on_new(retire.record, consumer=restored), Deleted("101")), past
    )
    assert (done.record.phase, done.record.restoring) == (Phase.IDLE, None)
    assert done.record.request is not None
    assert done.record.request.resumed
    wake = next_wakeup(done.record, POLICY, past, due_at=None, window=None, poll=minute)
    assert wake is not None
    assert wake.reason == "request"
    view = ConsumerView(intercom_id="100", fingerprint=OLD_SECRET.fingerprint(), version=5)
    started = machine.step(done.record, observe(done.record, consumer=view, intercom=(OLD,)), past)
    assert isinstance(started.action, Create)
    assert started.record.request is None


def test_a_spent_request_on_a_blocked_record_lists_nothing():
    """A blocked back-out whose request already resumed it once rests: a pass needs no list of
    Intercom for it (the machine rests without looking). Break: the waiting request made every
    pass (each reconcile_interval, each CronJob) list Intercom for nothing."""
    spent = _blocked_back_out(Request(emergency=False, by="bob", at=NOW, resumed=True))
    assert not needs_intercom(spent, due=False, command=None, now=NOW)
    fresh = _blocked_back_out(Request(emergency=False, by="bob", at=NOW))
    assert needs_intercom(fresh, due=False, command=None, now=NOW)  # its one go lists
    assert needs_intercom(spent, due=False, command=RotateNow(), now=NOW)  # an operator's


def test_a_request_whose_resume_fails_at_the_list_has_had_its_go():
    """The pass a waiting request resumes a blocked back-out in fails at its first call: the
    list (a revoked token, a missing read scope). That was the request's one go: it is marked,
    and the quiet daemon sets no wakeup for it. Break: the mark was only set once the list
    worked, so such a block was listed and re-blocked at every poll, for ever."""
    blocked = _blocked_back_out(Request(emergency=False, by="bob", at=NOW))
    refused = Failed("Intercom refused the token (401)", permanent=True)
    gathered = replace(in_flight(blocked), intercom=None, result=refused)
    decision = machine.step(blocked, gathered, NOW)
    assert decision.record.phase is Phase.BLOCKED
    assert decision.record.request is not None, "the request was lost"
    poll = timedelta(minutes=1)
    wake = next_wakeup(decision.record, POLICY, NOW, due_at=None, window=None, poll=poll)
    assert wake is None, f"woken every poll: {wake}"
    again = machine.step(decision.record, replace(in_flight(blocked), intercom=None), NOW)
    assert again.record.phase is Phase.BLOCKED
    assert again.action is None


def test_marking_a_request_writes_no_false_request_to_the_audit_trail():
    """The pass that marks a waiting request (it had its go at the block) is the daemon's:
    the audit trail (which a SIEM ingests) must not say the requester asked again. Break: the
    changed request was noted as a new 'rotate_now_requested' by bob."""
    blocked = _blocked_back_out(Request(emergency=False, by="bob", at=NOW))
    decision = machine.step(blocked, in_flight(blocked), NOW)
    assert decision.record.request is not None
    assert decision.record.request.resumed
    new = decision.record.audit[len(blocked.audit) :]
    assert "unblocked" in [e.event for e in new]
    assert "rotate_now_requested" not in [e.event for e in new]


def test_a_request_on_a_blocked_idle_target_starts_its_rotation():
    """A rotate-now recorded on a target blocked while idle (a foreign secret at the consumers'
    path, say) is served from the record: it resumes the block once and starts its rotation,
    which consumes it; no mark is left behind."""
    from test_machine import idle

    request = Request(emergency=False, by="bob", at=NOW)
    blocked = transitions.blocked(replace(idle(), request=request), "foreign secret")
    decision = machine.step(blocked, observe(blocked), NOW)
    assert isinstance(decision.action, Create)
    assert decision.record.request is None
