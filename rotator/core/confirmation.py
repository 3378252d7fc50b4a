"""Rollout confirmations: the pure rule for whether one counts (hook and CLI alike).

Only a confirmation naming the secret (or rotation) whose material is committed and stored, or
about to be, counts; anything else changes nothing, so a stale, replayed or misdirected call is
harmless. A confirmation may arrive while the record still says ``creating`` (the consumers'
path was written, the state write after it has not happened yet): it is kept, and the rotation
retires the old secret as soon as it reaches ``awaiting_rollout``.
"""

from __future__ import annotations

from datetime import datetime

from rotator.core.observation import Policy
from rotator.core.record import Phase, Record


def confirm(
    record: Record,
    policy: Policy,
    *,
    secret_id: str | None,
    rotation_id: str | None,
    via: str,
    now: datetime,
) -> tuple[Record | None, str, str]:
    """``(record to persist or None, status, message)``; statuses are the hook's."""
    names_it = (secret_id is not None and secret_id == record.pending_id) or (
        secret_id is None and rotation_id is not None and rotation_id == record.rotation_id
    )
    if rotation_id is not None and rotation_id != record.rotation_id:
        names_it = False
    committed = record.phase is Phase.CREATING and record.pending_secret is not None
    if record.phase is not Phase.AWAITING_ROLLOUT and not (committed and names_it):
        done = record.history[-1] if record.history else None
        if record.phase is Phase.RETIRING and names_it:
            return None, "already_confirmed", "the rotation is already retiring the old secret"
        if done is not None and (secret_id == done.new_id or rotation_id == done.rotation_id):
            return None, "already_confirmed", f"rotation {done.rotation_id} already completed"
        return (
            None,
            "not_awaiting",
            f"target {record.target} is {record.phase.value}, not awaiting rollout",
        )
    if not names_it:
        return (
            None,
            "wrong_secret",
            f"the secret awaiting rollout is {record.pending_id} (rotation {record.rotation_id})",
        )
    if policy.confirmation == "grace":
        return None, "policy_refuses", f"target {record.target} waits for its grace period only"
    if record.confirmed_at is not None:
        return None, "already_confirmed", f"already confirmed ({record.confirmed_by})"
    confirmed = record.evolve(confirmed_at=now, confirmed_by=via)
    return confirmed, "confirmed", f"rollout of {record.pending_id} confirmed"
