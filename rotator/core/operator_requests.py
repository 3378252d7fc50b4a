"""An operator's request meeting what is under way: a ``rotate-now`` joins a rotation (an
emergency makes it retire at once), waits behind a back-out or a sweep of orphans it cannot
join, or resumes a blocked target; ``rotator resume`` unblocks without asking for a rotation.

Pure functions of the record and the observation, used by the state machine
(``rotator.core.machine``) and by the reconciler when it records a request
(``rotator.reconciler.reconciler``) or a resume (``rotator.reconciler.controls``).
"""

from __future__ import annotations

from dataclasses import replace

from rotator.core import transitions as t
from rotator.core.observation import ConsumerView, Observation
from rotator.core.record import Phase, Record
from rotator.core.safety import as_stored, holds_pending


def unblocked(record: Record, obs: Observation) -> Record | None:
    """A blocked record resumed by an operator's request, or ``None`` while it waits for one.
    A request served from the record resumes what it waits behind (a back-out, a sweep: it
    cannot join them) once; were that to block again, every pass would resume it again."""
    request = record.request
    if obs.command is None and request is not None and request.resumed:
        return None
    record = resumed(record, obs.consumer)
    if obs.command is None and request is not None and not joinable(record):
        record = replace(record, request=replace(request, resumed=True))
    return record


def resumed(record: Record, consumer: ConsumerView) -> Record:
    """blocked -> the phase it was blocked in, by an operator's request (``rotate-now``) or
    ``rotator resume`` (which starts no rotation): a rotation whose new secret is no longer at
    the consumers' path as it was stored stores it again; an adoption (no material to store)
    is dropped by ``_awaiting``."""
    record = t.unblocked(record)
    if record.rotating and not as_stored(record, consumer):
        if record.adoption:
            record = replace(record, phase=Phase.AWAITING_ROLLOUT)
        elif record.pending_secret is not None:
            record = t.store_again(record)
    return record


def joined(record: Record, obs: Observation) -> Record:
    """A rotate-now during a rotation joins it: an emergency makes it retire at once. (An
    adoption whose secret consumers no longer hold keeps the request: ``_awaiting`` drops the
    adoption and the request starts a rotation.)"""
    if record.adoption and not holds_pending(record, obs.consumer):
        return record
    if not joinable(record):
        return record
    emergency = record.emergency or (obs.command is not None and obs.command.emergency)
    emergency = emergency or leaked(record)
    if emergency == record.emergency and record.request is None:
        return record
    return replace(record, emergency=emergency, request=None)


def joinable(record: Record) -> bool:
    """Whether an operator's rotate-now joins what is under way: a rotation does; a sweep of
    orphans or a back-out does not (joining would serve the request with nothing: the sweep's
    end rests idle, a back-out restores the secret an emergency is about). Their request waits
    in the record and starts its rotation once they end."""
    if not record.rotating or record.restoring is not None:
        return False
    phase = record.resume_phase if record.phase is Phase.BLOCKED else record.phase
    return not (phase is Phase.RETIRING and record.pending_id is None)


def leaked(record: Record) -> bool:
    """A recorded emergency request about the secret that is current now (one made about a
    secret since replaced is an ordinary request: the leak is no longer what consumers hold)."""
    request = record.request
    return request is not None and request.emergency and request.leaked == record.current_id
