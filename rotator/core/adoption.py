"""Adopting an existing Intercom secret into a target's record: pure rules, no I/O.

``rotator adopt`` (``rotator.cli.adopt``) checks the material, gathers the facts, writes the
consumers' path, then asks ``adopted`` for the record to persist with check-and-set. The rules:

1. The material must have the shape Intercom issues (``material_problem``): 256 bits, base64url.
   Anything else would reach every consumer and make every signature fail; it is refused before
   anything is written.
2. Never during a rotation: a record in ``creating``, ``awaiting_rollout`` or ``retiring`` (or
   blocked in one of them) has material and deadlines of its own that an adoption would
   contradict; ``in_progress`` says why, and the command refuses. An *adoption* under way (or
   blocked) is the exception: it has no material, and a new adoption replaces it.
3. The adopted id joins ``known_ids``: from then on it is this target's (rule 2 of PRODUCT.md
   lets it be retired, after a confirmation or a grace period, like any secret consumers held).
4. A secret the adoption displaces, that this target owned and that is still live, is retired
   the way the machine retires one when it adopts from the consumers' path: the record waits for
   rollout of the adopted secret, then deletes the old one after the grace period or a
   confirmation. Nothing is deleted at once: services may still hold the old one.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rotator.core import pause, rollout, transitions
from rotator.core.observation import Decision, Observation
from rotator.core.record import Phase, Record
from rotator.core.safety import live_ids, retired

#: What Intercom issues: 256 random bits, base64url without padding (the contract's ``secret``).
_MATERIAL = re.compile(r"[A-Za-z0-9_-]{43}")
MATERIAL_BYTES = 32


@dataclass(frozen=True, slots=True)
class Adoption:
    """The record to persist, and the owned secret it retires after the grace (if any)."""

    record: Record
    retires: str | None = None


class AdoptionRefused(ValueError):
    """The record cannot take an adoption now; the message says why and what to do."""


def material_problem(raw: bytes) -> str | None:
    """Why ``raw`` (one line read from stdin, its line ending removed) is not the material of an
    Intercom secret; ``None`` when it is. Never quotes the value: it may be a secret anyway."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return (
            "the material is not ASCII text (an Intercom secret is 43 base64url characters): "
            "check you piped the secret's value, not a file in another encoding"
        )
    if not _MATERIAL.fullmatch(text):
        return (
            f"the material is {len(text)} characters, not the 43 base64url characters "
            "(A-Z, a-z, 0-9, '-', '_') of a secret Intercom issues: check you piped the right value"
        )
    try:
        decoded = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the pattern admits only base64url
        decoded = b""
    if len(decoded) != MATERIAL_BYTES or base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
        return "the material does not decode to the 256 bits of a secret Intercom issues"
    return None


def in_progress(record: Record | None) -> str | None:
    """Why ``record`` cannot take an adoption now; ``None`` when it can."""
    if record is not None and record.paused is not None:
        # An adoption writes the consumers' path: a side effect a pause holds back.
        return (
            f"target {record.target} is {pause.reason(record.paused)}: run 'rotator resume "
            f"{record.target}' before adopting a secret"
        )
    if record is None or not record.rotating:
        return None
    phase = record.resume_phase if record.phase is Phase.BLOCKED else record.phase
    if record.adoption and phase is Phase.AWAITING_ROLLOUT and not record.emergency:
        # An adoption still waiting for its rollout: this one settles what consumers hold
        # instead. Not one that retires (its old secrets would be forgotten, live) nor one an
        # operator made an emergency (the leaked secret would stay current).
        return None
    return (
        f"rotation {record.rotation_id} of target {record.target} is in progress "
        f"({record.phase.value}"
        + (f" in {phase.value}" if record.phase is Phase.BLOCKED and phase else "")
        + "): let it finish (rotator status, rotator confirm) before adopting a secret"
    )


def adopted(
    record: Record | None,
    *,
    target: str,
    secret_id: str,
    grace_period: timedelta,
    now: datetime,
    fresh: str,
    version: int,
    fingerprint: str,
    foreign: bool = False,
) -> Adoption:
    """The record once consumers hold ``secret_id``. Pure: same inputs, same record.

    ``fresh`` is random hex for a rotation id, ``version`` and ``fingerprint`` the consumers'
    path version holding the adopted secret and that secret's fingerprint. ``foreign``: the
    record's secrets live in another Intercom workspace than the adopted one; they are no longer
    this target's to retire (a DELETE here could not reach them). Raises ``AdoptionRefused``
    when ``in_progress`` objects.
    """
    problem = in_progress(record)
    if problem is not None:
        raise AdoptionRefused(problem)
    base = record or Record(target=target)
    if base.phase is not Phase.IDLE or base.adoption:
        # Blocked while idle (a revoked token, a foreign secret at the consumers' path), or an
        # adoption under way: this adoption settles what consumers hold. An adoption it replaces
        # leaves its secret known, so the next rotation retires it after its rollout.
        base = transitions.rested(base)
    if foreign:
        base = replace(base, current_id=None, known_ids=(), lease=None)
    base = replace(base, known_ids=base.remember_id(secret_id), lease=None)
    old = base.current_id
    if old == secret_id:
        # Already this target's current secret: its schedule runs on from its last rotation.
        return Adoption(base)
    if old is None:
        return Adoption(transitions.adopted_as_current(base, secret_id, now=now))
    # The old secret may be live even if the list did not show it (lists lag): it is retired
    # after the rollout either way, and its DELETE tells whether it was still there.
    adopting = transitions.adopting(
        base,
        secret_id,
        now=now,
        grace=grace_period,
        rotation_id=f"adopt-{fresh[:8]}",
        version=version,
        fingerprint=fingerprint,
    )
    return Adoption(adopting, retires=old)


# --- adopting from the consumers' path (``rotator.core.machine``, idle) ---------------------------


def drift(record: Record, obs: Observation, now: datetime) -> Decision | None:
    """The consumers' path holds something other than the current secret: adopt or refuse."""
    held = obs.consumer.intercom_id
    if held is None or held == record.current_id:
        return None
    if held not in live_ids(obs) or held in retired(record):
        # Not listed (gone, or not listed yet), or retired by us (a list may still show it):
        # never adopted; a rotation replaces it.
        return None
    if held not in obs.policy.adopt and held not in record.known_ids:
        reason = (
            f"the consumers' Vault path holds secret {held}, which this target neither created "
            f"nor adopts (its current secret is {record.current_id}). Restore it, list {held} "
            "under adopt, or run rotate-now to provision a new secret."
        )
        return Decision(transitions.blocked(record, reason), None, reason)
    if record.current_id is None:
        adopted = transitions.adopted_as_current(record, held, now=now)
        return Decision(adopted, None, f"adopted secret {held} from the consumers' path")
    adopting = transitions.adopting(
        record,
        held,
        now=now,
        grace=obs.policy.grace_period,
        rotation_id=f"adopt-{obs.fresh[:8]}",
        version=obs.consumer.version,
        fingerprint=obs.consumer.fingerprint,
    )
    adopting = rollout.owed(adopting, obs.policy)
    why = f"adopted secret {held}; {record.current_id} retires after its rollout"
    return Decision(adopting, None, why)
