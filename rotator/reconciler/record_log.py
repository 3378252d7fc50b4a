"""What a persisted record says in the logs, once, when it is written: the transition, a
target newly blocked or an attempt failed, named consumers confirming or falling back, a
rollout stalling, and every new audit entry as one JSON line for a SIEM (``audit.paused``).

The record store (``rotator.reconciler.store``) calls ``written`` after each write, and
``audit_line`` for the entries other processes wrote (it relays them when this process ships
its log).
"""

from __future__ import annotations

from rotator.core import audit
from rotator.core.record import AuditEntry, Phase, Record
from rotator.logs import get_logger

log = get_logger()


def written(target: str, before: Record | None, after: Record, reason: str) -> None:
    """The lines ``after`` is news for, ``before`` being what was read."""
    if before is None or before.phase is not after.phase:
        log.info(
            "rotation.transition",
            rotation_id=after.rotation_id,
            **{"from": before.phase.value if before else None, "to": after.phase.value},
            reason=reason,
            generation=after.generation,
        )
    else:
        log.debug("rotation.step", rotation_id=after.rotation_id, reason=reason)
    _trouble(before, after)
    for entry in audit.new_entries(before, after):
        # The full trail, one JSON line an entry, for a SIEM (the record keeps the last few).
        audit_line(target, entry, relayed=False)


def audit_line(target: str, entry: AuditEntry, *, relayed: bool) -> None:
    """One audit entry as one JSON line, its event in the name (``audit.paused``): what a SIEM
    filters on. ``relayed``: written by another process, logged here because this one ships."""
    log.info(
        f"audit.{entry.event}",  # noqa: G004 - the event name is the key a SIEM filters on
        target=target,
        by=entry.by,
        why=entry.why,
        rotation_id=entry.rotation_id,
        secret_id=entry.secret_id,
        via=entry.via,
        at=entry.at.isoformat(),
        relayed=relayed,
    )


def _rollout(before: Record | None, after: Record, rotation_id: str | None) -> None:
    """Named consumers confirming, falling back (a probe saw an instance leave the new secret),
    and a rollout stalling past its grace: each once, when the record changes."""
    was = {p.name: p for p in before.rollout} if before is not None else {}
    for entry in after.rollout:
        old = was.get(entry.name)
        if entry.confirmed_at is not None and (old is None or old.confirmed_at is None):
            log.info(
                "rollout.consumer_confirmed",
                rotation_id=rotation_id,
                consumer=entry.name,
                by=entry.confirmed_by,
            )
        elif entry.confirmed_at is None and old is not None and old.confirmed_at is not None:
            log.info("rollout.consumer_regressed", rotation_id=rotation_id, consumer=entry.name)
    if after.stalled_at is not None and (before is None or before.stalled_at is None):
        behind = [
            p.name if p.since is None else f"{p.name} {p.switched}/{p.found}"  # no round yet
            for p in after.rollout
            if p.confirmed_at is None
        ]
        log.warning("rollout.stalled", rotation_id=rotation_id, behind=behind)


def _trouble(before: Record | None, after: Record) -> None:
    """A target newly blocked is an error (an operator must act), a failed attempt a warning
    (it retries by itself): alerting on log levels sees both. An idle record still carries
    the id of its last rotation, which is over: it is not named."""
    rotation_id = after.rotation_id if after.rotating else None
    _rollout(before, after, rotation_id)
    if after.phase is Phase.BLOCKED and (before is None or before.phase is not Phase.BLOCKED):
        log.error(
            "rotation.blocked",
            rotation_id=rotation_id,
            reason=after.blocked_reason,
        )
    elif after.attempts > (before.attempts if before is not None else 0):
        log.warning(
            "rotation.attempt_failed",
            rotation_id=rotation_id,
            attempt=after.attempts,
            retry_at=after.retry_at.isoformat() if after.retry_at else None,
            error=after.last_error,
        )
