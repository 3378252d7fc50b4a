"""What a pause does to a decision: no action, ever, while ``record.paused`` is set.

``rotator pause`` writes a ``Pause`` into the record (check-and-set, like every write); every
process honours it in ``rotator.core.machine.step``, so the daemon, a CronJob pass and a
hook-triggered pass all stop acting on the target at their next step. A pause never drops what
already happened: an action decided before the pause was written still has its result applied
(a create's commit point must be recorded, or its material would be lost), but whatever that
result would lead to next waits for ``rotator resume``. A rotation paused while awaiting its
rollout keeps both secrets live: nothing is deleted while paused.
"""

from __future__ import annotations

from rotator.core.observation import Decision
from rotator.core.record import Pause, Record


def reason(pause: Pause) -> str:
    """How a paused target reads in logs, ``status``, ``plan`` and metrics' reasons."""
    return f"paused by {pause.by} since {pause.at.isoformat()}: {pause.reason}"


def rest(record: Record) -> Decision | None:
    """The decision for a paused record before anything is decided; ``None`` when not paused."""
    if record.paused is None:
        return None
    return Decision(record, None, reason(record.paused))


def hold(decision: Decision) -> Decision:
    """A decision whose record is paused keeps its record (a result applied to it) and drops
    its follow-up action: the pass rests, and resuming decides that action again."""
    pause = decision.record.paused
    if pause is None or decision.action is None:
        return decision
    return Decision(decision.record, None, reason(pause))
