"""The parts a state record is built of: its phase, and the small frozen records it nests.

``rotator.core.record`` holds the ``Record`` itself and re-exports every name here, so callers
import them from there; they live apart so that ``rotator.core.record_storage`` can parse them
without importing the record that calls it (no import cycle).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

#: Bounds of a consumer's persisted summary: the record stays small whatever a fleet answers.
IN_USE_LIMIT = 8
BEHIND_LIMIT = 16


class Phase(enum.StrEnum):
    IDLE = "idle"
    CREATING = "creating"
    AWAITING_ROLLOUT = "awaiting_rollout"
    RETIRING = "retiring"
    BLOCKED = "blocked"


#: The phases of a rotation under way (or of an adoption waiting for its rollout).
ROTATING = frozenset({Phase.CREATING, Phase.AWAITING_ROLLOUT, Phase.RETIRING})


@dataclass(frozen=True, slots=True)
class Lease:
    """Who is acting on the target right now. Only reduces contention: the CAS version fences.

    Others judge expiry by their own monotonic clock: a lease whose ``nonce`` has not changed
    for ``ttl`` seconds of *their* time is abandoned. Wall clocks are never compared.
    """

    holder: str
    nonce: str
    ttl: float


@dataclass(frozen=True, slots=True)
class Request:
    """An operator's ``rotate-now``, persisted before anything that can fail, so that whichever
    process passes next serves it (and its emergency flag) even if the asking one died."""

    emergency: bool
    by: str
    at: datetime
    #: The secret that was current when the request was recorded: an emergency is about that
    #: one leaked secret, and no longer applies once another is current.
    leaked: str | None = None
    #: It resumed a blocked back-out or sweep it cannot join, served from the record: once is
    #: its due. Should that block again, it waits (kept) for an operator's next command.
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class Pause:
    """An operator's ``rotator pause``: no step with a side effect until ``rotator resume``."""

    by: str
    at: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class Abort:
    """An operator's ``rotator abort`` of rotation ``rotation_id``, persisted before anything
    acts on it, so whichever process holds the lease next serves it (``rotator.core.abort``)."""

    by: str
    at: datetime
    reason: str
    rotation_id: str


@dataclass(frozen=True, slots=True)
class Restoring:
    """The rotation under way is the back-out of aborted rotation ``rotation_id``: the secret
    consumers held before it (now ``pending_id`` again) is stored back and its rollout awaited,
    then the abandoned one (``abandoned_id``, now ``current_id``) is deleted."""

    rotation_id: str
    by: str
    at: datetime
    reason: str
    abandoned_id: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """The Intercom endpoint and workspace a record belongs to, and the consumers' path it
    stores to. ``workspace`` is a digest of the access token (``rotator.core.binding``): a
    process configured otherwise refuses to act."""

    endpoint: str
    workspace: str
    vault_path: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One completed rotation, for ``status --history`` and audits."""

    rotation_id: str
    generation: int
    new_id: str
    #: Every id Intercom confirmed gone (DELETE answered 204 or its own 404): never a guess.
    retired_ids: tuple[str, ...]
    started_at: datetime
    stored_at: datetime | None
    confirmed_at: datetime | None
    confirmed_by: str | None
    finished_at: datetime
    emergency: bool = False
    #: "completed", or "aborted" (``new_id`` is then the secret restored, or "" if none was
    #: needed) with who aborted it and why.
    outcome: str = "completed"
    by: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of a target's audit trail (``rotator.core.audit``): what happened, who did it
    (an operator's user@host or ``--actor``, the hook's authentication, consumer and client
    address, or the daemon's schedule or grace), why, and through which process (``via``)."""

    at: datetime
    event: str
    by: str
    why: str
    rotation_id: str | None = None
    secret_id: str | None = None
    via: str | None = None


@dataclass(frozen=True, slots=True)
class ConsumerProgress:
    """One named consumer's rollout of the secret as stored now: void for any other store
    (``rotator.core.rollout.progress`` reads it only when ``secret_id`` and ``stored_version``
    are the record's ``pending_id`` and ``stored_version``). Addresses and ids only."""

    name: str
    secret_id: str
    stored_version: int
    confirmed_at: datetime | None = None
    #: "probes", or who confirmed it: "hook:bearer", "hook:hmac", "cli".
    confirmed_by: str | None = None
    #: Consecutive probe rounds with every instance switched, and the time of the last counted.
    streak: int = 0
    streak_at: datetime | None = None
    #: The last probe round: instances found, of those switched, other ids answered, who is
    #: behind ("10.0.0.8:8080 on 101") and a problem with the consumer as a whole.
    found: int = 0
    switched: int = 0
    in_use: tuple[str, ...] = ()
    behind: tuple[str, ...] = ()
    problem: str | None = None
    #: Since when that summary has been what it is (a stall that does not move costs no write).
    since: datetime | None = None
