"""What the next pass over a target would do now, and why, without doing any of it.

``plan_target`` gathers exactly as a pass does (``Pass._gather``: the record and the consumers'
path from Vault, Intercom's list when the decision needs one, a probe round of probed consumers
while a rollout waits) and asks the real decision core (``machine.step``) once. The decision is
then described, never persisted or acted on: no record is written, no lease taken, nothing is
created, stored or deleted, and no listener (notifications, metrics) hears of it, since the
store a plan reads through has none. Only reads leave this process: Vault reads, Intercom's
GET of its secrets, the probes' GETs.

A plan is what a pass would do *now*: another process may act first, the clock moves on, an
instance switches. It is a preview, not a promise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from rotator.config import TargetSettings
from rotator.core import machine, pause, rollout, windows
from rotator.core.observation import Create, Decision, Delete, Observation, Store
from rotator.core.record import Phase, Record
from rotator.errors import LocalError
from rotator.reconciler.passes import Pass, Ports, TargetReport, next_rotation_at
from rotator.reconciler.store import RecordStore

#: What ``action`` says for each kind of decision.
ACTIONS = ("create", "store", "delete", "none")


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """One target's next step as the decision core sees it now. Ids, times and reasons only:
    never material."""

    target: str
    #: The phase the target is in now (``new``: nothing stored yet).
    phase: str
    #: ``create``, ``store``, ``delete`` or ``none``.
    action: str
    #: The secret the action is about: the one to store or to delete.
    secret_id: str | None
    #: The decision's own reason, as logs and ``status`` word it.
    reason: str
    #: One line for the operator: "start a rotation: due since ...", "retire secret 102", ...
    summary: str
    next_rotation_at: datetime | None = None
    #: When the rollout of the secret awaiting it is judged done by its grace period.
    deadline: datetime | None = None
    #: Named consumers not yet on the new secret, each with who is behind.
    waiting_for: tuple[str, ...] = ()
    #: Another process holds the lease: it acts, not the next pass of this one.
    held_off: bool = False
    #: Why this process cannot plan the target (its Intercom token is missing, say).
    error: str | None = None


def plan_target(ports: Ports, target: TargetSettings) -> TargetPlan:
    """The plan of ``target``. Raises what reading Vault raises (``RecordError`` for a record
    that does not read, ``VaultUnavailable``); a problem of this process only
    (``LocalError``: no Intercom token, say) is the plan's ``error``."""
    quiet = replace(ports, store=RecordStore(ports.store.kv, ports.store.state_path))
    return _Planning(quiet, target).plan()


class _Planning(Pass):
    """A pass that gathers and decides once, and stops there."""

    def __init__(self, ports: Ports, target: TargetSettings) -> None:
        super().__init__(ports, target, command=None, stop=None)

    def plan(self) -> TargetPlan:
        try:
            gathered = self._gather()
        except LocalError as e:
            return self._unplanned(str(e))
        now = self.ports.clock()
        if isinstance(gathered, TargetReport):
            # Resting: the record alone says nothing is due (it was just read; read it again).
            record = self.ports.store.load(self.target.name).record
            upcoming = next_rotation_at(self.target, record) if record else None
            when = upcoming.isoformat() if upcoming else "the next pass"
            return TargetPlan(
                target=self.target.name,
                phase=gathered.phase,
                action="none",
                secret_id=None,
                reason=gathered.reason,
                summary=f"nothing: next rotation at {when}",
                next_rotation_at=upcoming,
            )
        decision = machine.step(gathered.record, gathered.obs, now)
        return describe(
            self.target,
            stored=gathered.stored,
            decision=decision,
            obs=gathered.obs,
            now=now,
        )

    def _unplanned(self, error: str) -> TargetPlan:
        record = self.ports.store.load(self.target.name).record
        return TargetPlan(
            target=self.target.name,
            phase=record.phase.value if record else "new",
            action="none",
            secret_id=None,
            reason=error,
            summary=f"cannot plan: {error}",
            error=error,
        )


def describe(
    target: TargetSettings,
    *,
    stored: Record | None,
    decision: Decision,
    obs: Observation,
    now: datetime,
) -> TargetPlan:
    """The plan a decision makes: its action, and a sentence an operator reads at a glance."""
    after, action = decision.record, decision.action
    before = stored
    upcoming = next_rotation_at(target, after) if after.phase is Phase.IDLE else None
    waiting = _waiting_for(target, after, obs)
    kind, secret_id = "none", None
    if isinstance(action, Create):
        kind = "create"
    elif isinstance(action, Store):
        kind, secret_id = "store", after.pending_id
    elif isinstance(action, Delete):
        kind, secret_id = "delete", action.secret_id
    return TargetPlan(
        target=target.name,
        phase=before.phase.value if before else "new",
        action=kind,
        secret_id=secret_id,
        reason=decision.reason,
        summary=(
            f"nothing until resumed: {pause.reason(after.paused)}"
            if after.paused is not None and not decision.held_off
            else _window_wait(decision, obs)
            or _summary(target, before, decision, obs, now=now, waiting=waiting)
        ),
        next_rotation_at=upcoming,
        deadline=after.deadline if after.rotating else None,
        waiting_for=waiting,
        held_off=decision.held_off,
    )


def _summary(
    target: TargetSettings,
    before: Record | None,
    decision: Decision,
    obs: Observation,
    *,
    now: datetime,
    waiting: tuple[str, ...],
) -> str:
    after, action = decision.record, decision.action
    if decision.held_off:
        holder = before.lease.holder if before and before.lease else "another process"
        return (
            f"another process ({holder}) is acting: it holds the lease, and decides until it "
            "lets go (or its lease sits unchanged for its ttl)"
        )
    if isinstance(action, Create):
        if before is None or before.phase is Phase.IDLE:
            return f"start a rotation: {_why_start(target, before, obs)}"
        return f"create the new secret: {decision.reason}"
    if isinstance(action, Store):
        return f"store secret {after.pending_id} at the consumers' path: {decision.reason}"
    if isinstance(action, Delete):
        return f"retire secret {action.secret_id}: {decision.reason}"
    if after.phase is Phase.BLOCKED:
        return f"blocked: {after.blocked_reason or decision.reason}"
    if after.retry_at is not None and now < after.retry_at:
        return f"backing off until {after.retry_at.isoformat()}: {after.last_error}"
    if after.phase is Phase.AWAITING_ROLLOUT:
        until = after.deadline.isoformat() if after.deadline else "its confirmation"
        behind = f"; waiting for {'; '.join(waiting)}" if waiting else ""
        return f"wait for rollout until {until}{behind} ({decision.reason})"
    if after.phase is Phase.IDLE:
        upcoming = next_rotation_at(target, after)
        when = upcoming.isoformat() if upcoming else "the next pass"
        return f"nothing: next rotation at {when} ({decision.reason})"
    return f"nothing now: {decision.reason}"


def _window_wait(decision: Decision, obs: Observation) -> str | None:
    """The summary of a step held for a closed window (``rotator.core.windows``)."""
    held = windows.outside(obs.window)
    if held is None or decision.action is not None or decision.held_off:
        return None
    if decision.reason.startswith(held):
        return f"nothing: due, but {held}"
    if decision.record.phase is Phase.AWAITING_ROLLOUT and held in decision.reason:
        return f"wait to retire: rollout done, but {held} ({decision.reason})"
    return None


def _why_start(target: TargetSettings, before: Record | None, obs: Observation) -> str:
    """Why a rotation would start: asked for, nothing for consumers to read, or due."""
    if before is not None and before.request is not None:
        kind = "an emergency rotate-now" if before.request.emergency else "a rotate-now"
        return f"{kind} was requested"
    if obs.consumer.intercom_id is None:
        return "the consumers' Vault path holds no secret yet"
    if obs.due:
        upcoming = next_rotation_at(target, before) if before else None
        return f"due since {upcoming.isoformat()}" if upcoming else "due: no rotation recorded yet"
    return "the consumers' secret is gone from Intercom"


def _waiting_for(target: TargetSettings, record: Record, obs: Observation) -> tuple[str, ...]:
    """Each named consumer not yet confirmed on the secret awaiting rollout, with who is
    behind (as ``status`` shows them)."""
    if record.phase is not Phase.AWAITING_ROLLOUT:
        return ()
    shown = []
    for state in rollout.states(record, obs.policy.consumers, target.confirmation):
        if state.state == "confirmed":
            continue
        if state.kind == "hook":
            shown.append(f"{state.name} (its confirmation)")
            continue
        detail = state.problem or ", ".join(state.behind[: rollout.BEHIND_SHOWN])
        counted = f"{state.switched}/{state.found} switched" if state.found is not None else ""
        parts = [p for p in (counted, detail) if p]
        shown.append(f"{state.name} ({'; '.join(parts) or 'not probed yet'})")
    return tuple(shown)
