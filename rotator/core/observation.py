"""What the rotation machine is told (``Observation``) and what it answers (``Decision``).

Plain frozen values, no behaviour beyond ``absorb``, which folds an action's result into the
observation so the next step sees the world as it now is. See ``rotator.core.machine`` for the
rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from rotator.core.record import Record
from rotator.redaction import SecretValue

# --- what the machine is told ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveSecret:
    """A secret an Intercom list answer showed: its id and name, all a decision needs."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Policy:
    """The target's configuration, as far as decisions go."""

    target: str
    secret_name: str
    grace_period: timedelta
    confirmation: str  # "hook-or-grace" | "hook" | "grace"
    adopt: tuple[str, ...] = ()
    lease_ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class ConsumerView:
    """What the consumers' Vault path holds (never the material itself: its fingerprint)."""

    intercom_id: str | None = None
    rotation_id: str | None = None
    fingerprint: str | None = None
    created_at: int | None = None
    version: int = 0


@dataclass(frozen=True, slots=True)
class RotateNow:
    emergency: bool = False


@dataclass(frozen=True, slots=True)
class Created:
    secret_id: str
    name: str
    created_at: int | None
    secret: SecretValue


@dataclass(frozen=True, slots=True)
class CreateUnknown:
    message: str


@dataclass(frozen=True, slots=True)
class Stored:
    """The consumers' path was written and read back; ``consumer`` is what was read."""

    consumer: ConsumerView


@dataclass(frozen=True, slots=True)
class Deleted:
    secret_id: str
    already: bool = False


@dataclass(frozen=True, slots=True)
class Failed:
    """An action (or gathering) failed; ``permanent`` ones block the target."""

    message: str
    permanent: bool
    delay: float | None = None


Result = Created | CreateUnknown | Stored | Deleted | Failed


@dataclass(frozen=True, slots=True)
class Observation:
    policy: Policy
    consumer: ConsumerView
    #: Intercom's live secrets; ``None`` when not gathered (see ``needs_intercom``).
    intercom: tuple[LiveSecret, ...] | None
    due: bool
    me: str
    #: Fresh random hex (>= 16 chars) for ids and name suffixes; the machine stays deterministic.
    fresh: str
    command: RotateNow | None = None
    result: Result | None = None
    #: True when nobody else holds a live lease (the reconciler judges by its monotonic clock).
    lease_free: bool = True


# --- what the machine answers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    name: str


@dataclass(frozen=True, slots=True)
class Store:
    """Project ``record.pending_*`` to the consumers' path (cas = observed version), read back."""

    cas: int


@dataclass(frozen=True, slots=True)
class Delete:
    secret_id: str


Action = Create | Store | Delete


@dataclass(frozen=True, slots=True)
class Decision:
    record: Record
    action: Action | None
    reason: str
    #: True when the decision was to act but another process's live lease held it off.
    held_off: bool = False


def absorb(obs: Observation, result: Result) -> Observation:
    """Fold an action's result into the observation, so the next step sees the world as it is
    now (a created secret is live, a deleted one is gone, the consumers' path was rewritten)."""
    if isinstance(result, Created):
        info = LiveSecret(id=result.secret_id, name=result.name)
        listed = None if obs.intercom is None else (*obs.intercom, info)
        return replace(obs, intercom=listed, result=result)
    if isinstance(result, Deleted):
        listed = (
            None
            if obs.intercom is None
            else tuple(s for s in obs.intercom if s.id != result.secret_id)
        )
        return replace(obs, intercom=listed, result=result)
    if isinstance(result, Stored):
        return replace(obs, consumer=result.consumer, result=result)
    return replace(obs, result=result)
