"""Adopting an existing Intercom secret into a target's record: pure rules, no I/O.

``rotator adopt`` (``rotator.cli.adopt``) gathers the facts, writes the consumers' path,
then asks ``adopted`` for the record to persist with check-and-set. The rules:

1. Never during a rotation: a record in ``creating``, ``awaiting_rollout`` or ``retiring`` (or
   blocked in one of them) has material and deadlines of its own that an adoption would
   contradict; ``in_progress`` says why, and the command refuses.
2. The adopted id joins ``known_ids``: from then on it is this target's (rule 2 of PRODUCT.md
   lets it be retired, after a confirmation or a grace period, like any secret consumers held).
3. A secret the adoption displaces, that this target owned and that is still live, is retired
   the way the machine retires one when it adopts from the consumers' path (``machine._drift``):
   the record waits for rollout of the adopted secret, then deletes the old one after the grace
   period or a confirmation. Nothing is deleted at once: services may still hold the old one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from rotator.core.record import Phase, Record

#: What Intercom issues: 256 random bits, base64url without padding.
_MATERIAL = re.compile(r"[A-Za-z0-9_-]{43}")
#: Intercom ids are opaque strings; anything outside this is a typo, not an id.
_SECRET_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_ROTATING = frozenset({Phase.CREATING, Phase.AWAITING_ROLLOUT, Phase.RETIRING})


@dataclass(frozen=True, slots=True)
class Adoption:
    """The record to persist, and the owned secret it retires after the grace (if any)."""

    record: Record
    retires: str | None = None


class AdoptionRefused(ValueError):
    """The record cannot take an adoption now; the message says why and what to do."""


def valid_secret_id(secret_id: str) -> bool:
    return bool(_SECRET_ID.fullmatch(secret_id))


def material_warning(material: str) -> str | None:
    """Why ``material`` does not look like an Intercom secret (it is adopted anyway)."""
    if _MATERIAL.fullmatch(material):
        return None
    return (
        f"the material is {len(material)} characters, not the 43 base64url characters of a "
        "secret Intercom issues; check you piped the right value (adopting it anyway)"
    )


def in_progress(record: Record | None) -> str | None:
    """Why ``record`` cannot take an adoption now; ``None`` when it can."""
    if record is None:
        return None
    phase = record.phase
    if phase is Phase.BLOCKED and record.resume_phase in _ROTATING:
        phase = record.resume_phase
    if phase not in _ROTATING:
        return None
    return (
        f"rotation {record.rotation_id} of target {record.target} is in progress "
        f"({record.phase.value}"
        + (f" in {phase.value}" if record.phase is Phase.BLOCKED else "")
        + "): let it finish (rotator status, rotator confirm) before adopting a secret"
    )


def adopted(
    record: Record | None,
    *,
    target: str,
    secret_id: str,
    live: frozenset[str],
    grace_period: timedelta,
    now: datetime,
    fresh: str,
) -> Adoption:
    """The record once consumers hold ``secret_id``. Pure: same inputs, same record.

    ``live`` is the set of ids live at Intercom; ``fresh`` random hex for a rotation id.
    Raises ``AdoptionRefused`` when ``in_progress`` objects.
    """
    problem = in_progress(record)
    if problem is not None:
        raise AdoptionRefused(problem)
    base = record or Record(target=target)
    if base.phase is Phase.BLOCKED:
        # Blocked while idle (a revoked token, a foreign secret at the consumers' path): the
        # adoption settles what consumers hold; the next pass finds any remaining cause again.
        base = base.evolve(
            phase=Phase.IDLE,
            blocked_reason=None,
            resume_phase=None,
            attempts=0,
            retry_at=None,
            last_error=None,
        )
    known = base.remember_id(secret_id)
    old = base.current_id
    if old == secret_id:
        # Already this target's current secret: its schedule runs on from its last rotation.
        return Adoption(base.evolve(known_ids=known, lease=None))
    if old is None or old not in live:
        return Adoption(
            base.evolve(current_id=secret_id, known_ids=known, last_rotation_at=now, lease=None)
        )
    return Adoption(over_live(base, secret_id, now, grace_period, fresh), retires=old)


def over_live(
    record: Record, secret_id: str, now: datetime, grace_period: timedelta, fresh: str
) -> Record:
    """Adopt ``secret_id`` while the current secret is live: the current one is retired like a
    rotation's old secret, after the grace period or a confirmation (never at once)."""
    return record.evolve(
        phase=Phase.AWAITING_ROLLOUT,
        generation=record.generation + 1,
        rotation_id=f"adopt-{fresh[:8]}",
        planned_name=None,
        pending_id=secret_id,
        pending_secret=None,
        pending_created_at=None,
        old_ids=(),
        started_at=now,
        stored_at=now,
        deadline=now + grace_period,
        confirmed_at=None,
        confirmed_by=None,
        emergency=False,
        known_ids=record.remember_id(secret_id),
        lease=None,
    )
