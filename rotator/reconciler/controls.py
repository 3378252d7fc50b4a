"""The operator's controls that write a target's record: ``rotator rotate-now``'s request,
``pause``, ``resume`` and ``abort``.

A ``rotate-now`` is recorded before anything that can fail (PRODUCT.md rule 3): whichever
process passes next serves it, and an ``Ask`` carries it across the re-reads of the invocation
that recorded it. During a rotation it joins it; behind a back-out or a sweep of orphans it waits
(``rotator.core.operator_requests``).

A pause is written into the target's record with check-and-set, like every write, so every
process honours it at its next step (``rotator.core.pause``): the daemon, a CronJob pass, a
hook-triggered pass. ``resume`` clears a pause and a block in one write, asking for no
rotation. A ``rotate-now`` on a paused target is refused (``TargetPaused``) before anything is
written: an operator who froze a target must lift the freeze on purpose.

``abort`` records an ``Abort`` for the process holding the lease next (``rotator.core.abort``)
after checking here what can be checked before anything is written: that a rotation is under
way in a phase it can be backed out of, and that the consumers' path's KV history still holds
the secret to restore. Anything refused raises ``AbortRefused`` with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from rotator.config import TargetSettings
from rotator.core import abort as aborting
from rotator.core import operator_requests, transitions
from rotator.core import pause as pausing
from rotator.core.observation import RotateNow, initial_record, needs_history
from rotator.core.operator_requests import resumed
from rotator.core.record import Abort, Binding, Pause, Phase, Record, Request
from rotator.errors import PermanentError
from rotator.logs import get_logger
from rotator.redaction import redact_text

if TYPE_CHECKING:
    from rotator.reconciler.reconciler import Reconciler
    from rotator.reconciler.store import Loaded

log = get_logger()


class TargetPaused(PermanentError):
    """An operator request that would act on a paused target (``rotate-now``): nothing written."""


class AbortRefused(PermanentError):
    """An abort that cannot be served (no rotation, retiring, an emergency, no KV version to
    restore...): nothing written."""


@dataclass(slots=True)
class Ask:
    """An operator's rotate-now, across the re-reads of one invocation.

    If the target's generation moves on after the request was recorded, a rotation served it:
    the command is dropped, so two rotate-nows never make two rotations. An emergency is about
    ``leaked``, the secret current when it was recorded: once another is current, it is an
    ordinary request.
    """

    command: RotateNow
    generation: int
    joined: bool = False
    leaked: str | None = None

    def command_for(self, record: Record) -> RotateNow | None:
        command = self.command
        if command.emergency and record.current_id != self.leaked:
            command = RotateNow(emergency=False)
        if record.generation != self.generation:
            # A leak still wants the rotation under way to retire the old secret at once.
            return command if command.emergency and record.rotating else None
        return command


def refuse_if_paused(name: str, record: Record) -> None:
    """Raise ``TargetPaused`` naming who paused the target, why, and how to resume it."""
    if record.paused is not None:
        raise TargetPaused(
            f"target {name} is {pausing.reason(record.paused)}; nothing was written. Run "
            f"'rotator resume {name}' first to let it act again."
        )


def request(
    reconciler: Reconciler, target: TargetSettings, command: RotateNow, read: Loaded | None = None
) -> tuple[Ask, Loaded]:
    """Record a rotate-now in the target's record before anything that can fail. During a
    rotation it joins it (an emergency is recorded on it instead). Also the record as it
    now stands, for the pass that follows."""
    mine = reconciler.clients.binding(target)  # LocalError before anything is written
    outcome: list[Ask] = []

    def change(record: Record | None) -> Record | None:
        now = reconciler.clock()
        record = _bound(reconciler, target, record, mine, now)
        refuse_if_paused(target.name, record)
        # During a sweep of orphans or a back-out the request waits for its end
        # (``operator_requests.joinable``); an emergency during a back-out is about the
        # secret being restored, which consumers move back to.
        back = record.restoring is not None
        leaked = record.pending_id if back else record.current_id
        joined = operator_requests.joinable(record)
        outcome[:] = [Ask(command, record.generation, joined=joined, leaked=leaked)]
        if joined and record.phase is not Phase.BLOCKED:
            if not command.emergency or record.emergency:
                return None
            return replace(record, emergency=True)
        # Idle, or blocked (the request is also what resumes it): recorded for every process.
        waiting = record.request
        covered = waiting is not None and (
            not command.emergency or (waiting.emergency and waiting.leaked == leaked)
        )
        if covered and waiting is not None and waiting.resumed:
            # It already resumed a blocked back-out or sweep once
            # (``operator_requests.unblocked``): this ask is a fresh one, persisted, lest it
            # die with this process.
            return replace(record, request=replace(waiting, resumed=False))
        if covered:
            return None  # a request already waits that covers this one: it is served
        asked = Request(
            emergency=command.emergency,
            by=command.by or reconciler.me,
            at=now,
            leaked=leaked,
        )
        return transitions.requested(record, asked)

    _, _, known = reconciler.store.updated(
        target, change, reason="rotate-now requested", by=command.by, start=read
    )
    log.info(
        "rotation.requested",
        emergency=command.emergency,
        joined=outcome[0].joined if outcome else False,
    )
    return outcome[0], known


def _bound(
    reconciler: Reconciler,
    target: TargetSettings,
    record: Record | None,
    mine: Binding,
    now: datetime,
) -> Record:
    """The record an operator's command changes (a target never passed over gets its first),
    refused (``LocalError``) when it belongs to another workspace than this process's."""
    if record is None:
        record = initial_record(reconciler.policy(target), reconciler.store.consumer(target), now)
    reconciler.check_binding(target, record, mine)
    return record


def pause(reconciler: Reconciler, name: str, *, by: str, reason: str) -> str:
    """Pause ``name`` (check-and-set): no create, store or delete until it is resumed. A target
    never passed over gets its first record, paused. What happened, in words."""
    if not reason.strip():
        raise ValueError("a pause needs a reason")
    target = reconciler.target(name)
    mine = reconciler.clients.binding(target)  # LocalError before anything is written
    already: list[Pause] = []

    def change(record: Record | None) -> Record | None:
        now = reconciler.clock()
        record = _bound(reconciler, target, record, mine, now)
        if record.paused is not None:
            already[:] = [record.paused]
            return None  # the first pause stands: who paused and why are not overwritten
        return transitions.paused(record, Pause(by=by, at=now, reason=reason.strip()))

    _, after = reconciler.store.update(target, change, reason="paused by an operator", by=by)
    if after is None or after.paused is None:
        return f"already {pausing.reason(already[0])}; nothing changed"
    log.info("target.paused", target=name, phase=after.phase.value, by=by, why=reason)
    return f"{pausing.reason(after.paused)} (phase {after.phase.value}; nothing acts until resumed)"


def resume(reconciler: Reconciler, name: str, *, by: str | None = None) -> str:
    """Clear the target's pause and its block, in one check-and-set write, asking for no
    rotation; what was cleared, in words."""
    target = reconciler.target(name)
    mine = reconciler.clients.binding(target)  # LocalError before anything is written
    cleared: list[str] = []

    def change(record: Record | None) -> Record | None:
        cleared[:] = []
        if record is None or (record.paused is None and record.phase is not Phase.BLOCKED):
            return None
        reconciler.check_binding(target, record, mine)
        if record.paused is not None:
            cleared.append(f"it was {pausing.reason(record.paused)}")
            record = transitions.unpaused(record)
        if record.phase is Phase.BLOCKED:
            cleared.append(f"it was blocked: {record.blocked_reason or 'blocked'}")
            record = resumed(record, reconciler.store.consumer(target))
        return record

    _, after = reconciler.store.update(target, change, reason="resumed by an operator", by=by)
    if after is None:
        return "neither paused nor blocked; nothing to resume"
    log.info("target.resumed", target=name, phase=after.phase.value, cleared=cleared)
    return f"resumed in {after.phase.value} ({'; and '.join(cleared)})"


def abort(reconciler: Reconciler, name: str, *, by: str, reason: str) -> str:
    """Record an abort of the rotation under way on ``name`` (check-and-set), once what can be
    checked beforehand holds; what was recorded, in words. ``AbortRefused`` when it cannot be
    served, with nothing written."""
    if not reason.strip():
        raise ValueError("an abort needs a reason")
    target = reconciler.target(name)
    mine = reconciler.clients.binding(target)  # LocalError before anything is written
    waiting: list[Abort] = []

    def change(record: Record | None) -> Record | None:
        problem = aborting.refusal(record)
        if record is None or problem is not None:
            raise AbortRefused(f"cannot abort {name}: {problem}; nothing was written")
        reconciler.check_binding(target, record, mine)
        if record.abort is not None:
            waiting[:] = [record.abort]
            return None  # the first request stands, and is served by the next pass
        now, rotation = reconciler.clock(), record.rotation_id or ""
        request = Abort(by=by, at=now, reason=reason.strip(), rotation_id=rotation)
        asked = aborting.abort_requested(record, request)
        consumer = reconciler.store.consumer(target)
        below = needs_history(asked)
        history = None
        if below is not None:
            pending = record.pending_id
            history = reconciler.store.history(target, record.current_id, below, pending)
        reached = record.phase is not Phase.CREATING or aborting.reached(record, consumer, history)
        if history is not None and reached:
            found = aborting.restorable(record, history)
            if isinstance(found, str):
                raise AbortRefused(f"cannot abort {name}: {found}")
        if redact_text(by + reason) != by + reason:
            # Both secrets' material is known here by now (the record, the path, the history):
            # a reason quoting it would carry it to the history, status and notifications.
            raise AbortRefused(
                f"cannot abort {name}: the reason or actor holds secret material or a token; "
                "nothing was written"
            )
        return asked

    _, after = reconciler.store.update(
        target, change, reason="abort requested by an operator", by=by
    )
    if after is None or after.abort is None:
        request = waiting[0]
        return f"an abort by {request.by} ({request.reason}) already waits; nothing changed"
    log.info("rotation.abort_requested", target=name, rotation=after.rotation_id, by=by, why=reason)
    held = f"; {pausing.reason(after.paused)}: served once resumed" if after.paused else ""
    return f"abort of rotation {after.rotation_id} recorded ({after.phase.value}){held}"
