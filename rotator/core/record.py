"""The persisted state of one target: a frozen, versioned record, stored in Vault KV v2.

One record per target lives at ``<mount>/<state_path>/<target>`` and is written only with
check-and-set: the KV version is the fencing token that makes "one rotation at a time, across all
processes" true. Records are never mutated; every change is a ``replace``.

While a rotation is between "created at Intercom" and "done", the record also carries the new
secret's material (``pending_secret``). That write is the commit point of a rotation: once it
succeeds the material is in Vault and can never be lost, and the consumers' path is an idempotent
projection of it that any process can (re)write. The material is dropped from the record when the
rotation completes; the consumers' path then holds the only copy.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Self

from rotator.errors import PermanentError
from rotator.redaction import SecretValue

SCHEMA_VERSION = 1
HISTORY_LIMIT = 20
OWNED_NAMES_LIMIT = 64
KNOWN_IDS_LIMIT = 64


class Phase(enum.StrEnum):
    IDLE = "idle"
    CREATING = "creating"
    AWAITING_ROLLOUT = "awaiting_rollout"
    RETIRING = "retiring"
    BLOCKED = "blocked"


class RecordError(PermanentError):
    """A stored record rotator cannot read (another schema version, or damaged)."""


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
class HistoryEntry:
    """One completed rotation, for ``status --history`` and audits."""

    rotation_id: str
    generation: int
    new_id: str
    retired_ids: tuple[str, ...]
    started_at: datetime
    stored_at: datetime | None
    confirmed_at: datetime | None
    confirmed_by: str | None
    finished_at: datetime
    emergency: bool = False


@dataclass(frozen=True, slots=True)
class Record:
    """Everything rotator remembers about one target."""

    target: str
    phase: Phase = Phase.IDLE
    #: Rotations started so far; the secret created by rotation g carries "g<generation>".
    generation: int = 0
    rotation_id: str | None = None
    #: The exact name of the latest create attempt: the only handle on a lost answer.
    planned_name: str | None = None
    #: Every name this target ever asked Intercom for (bounded): how it recognises its own.
    owned_names: tuple[str, ...] = ()
    #: Ids whose material reached the consumers' path (or that were current): never orphans,
    #: and never deleted without a confirmation or a grace period.
    known_ids: tuple[str, ...] = ()
    #: The secret consumers held before this rotation (after it: the new one).
    current_id: str | None = None
    pending_id: str | None = None
    pending_secret: SecretValue | None = None
    pending_created_at: int | None = None
    #: Secrets to delete, in order; every id here passed the ownership rules when added.
    old_ids: tuple[str, ...] = ()
    started_at: datetime | None = None
    stored_at: datetime | None = None
    deadline: datetime | None = None
    confirmed_at: datetime | None = None
    confirmed_by: str | None = None
    emergency: bool = False
    last_rotation_at: datetime | None = None
    #: Consecutive failures, and when to try again (exponential backoff).
    attempts: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None
    blocked_reason: str | None = None
    resume_phase: Phase | None = None
    lease: Lease | None = None
    history: tuple[HistoryEntry, ...] = field(default=())

    def __repr__(self) -> str:
        # The dataclass repr would be long; the material is a SecretValue and safe either way.
        return (
            f"Record(target={self.target!r}, phase={self.phase.value}, "
            f"generation={self.generation}, rotation_id={self.rotation_id!r}, "
            f"current_id={self.current_id!r}, pending_id={self.pending_id!r}, "
            f"old_ids={self.old_ids!r})"
        )

    def evolve(self, **changes: Any) -> Self:
        return replace(self, **changes)

    def remember_name(self, name: str) -> tuple[str, ...]:
        names = (*self.owned_names, name)
        return names[-OWNED_NAMES_LIMIT:]

    def remember_id(self, secret_id: str) -> tuple[str, ...]:
        if not secret_id or secret_id in self.known_ids:
            return self.known_ids
        return (*self.known_ids, secret_id)[-KNOWN_IDS_LIMIT:]

    # --- storage -------------------------------------------------------------------------------

    def to_storage(self) -> dict[str, Any]:
        """The KV data: JSON types only. The one place the pending material is revealed."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "pending_secret":
                value = value.reveal() if value is not None else None
            elif f.name == "history":
                value = [_jsonable(asdict(h)) for h in value]
            elif f.name == "lease":
                value = asdict(value) if value is not None else None
            data[f.name] = _jsonable(value)
        return data

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> Record:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise RecordError(
                f"state record has schema_version {version!r}; this rotator reads "
                f"{SCHEMA_VERSION}. Upgrade rotator (or restore the record) before it acts."
            )
        try:
            return cls(
                target=str(data["target"]),
                phase=Phase(data["phase"]),
                generation=int(data["generation"]),
                rotation_id=data.get("rotation_id"),
                planned_name=data.get("planned_name"),
                owned_names=tuple(data.get("owned_names") or ()),
                known_ids=tuple(data.get("known_ids") or ()),
                current_id=data.get("current_id"),
                pending_id=data.get("pending_id"),
                pending_secret=(
                    SecretValue(data["pending_secret"]) if data.get("pending_secret") else None
                ),
                pending_created_at=data.get("pending_created_at"),
                old_ids=tuple(data.get("old_ids") or ()),
                started_at=_time(data.get("started_at")),
                stored_at=_time(data.get("stored_at")),
                deadline=_time(data.get("deadline")),
                confirmed_at=_time(data.get("confirmed_at")),
                confirmed_by=data.get("confirmed_by"),
                emergency=bool(data.get("emergency", False)),
                last_rotation_at=_time(data.get("last_rotation_at")),
                attempts=int(data.get("attempts", 0)),
                retry_at=_time(data.get("retry_at")),
                last_error=data.get("last_error"),
                blocked_reason=data.get("blocked_reason"),
                resume_phase=Phase(data["resume_phase"]) if data.get("resume_phase") else None,
                lease=Lease(**data["lease"]) if data.get("lease") else None,
                history=tuple(_history(h) for h in data.get("history") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            # The message names the problem, never a value: the record holds material.
            raise RecordError(f"state record is damaged ({type(e).__name__}: {e})") from None


def _history(raw: Mapping[str, Any]) -> HistoryEntry:
    started = _time(raw["started_at"])
    finished = _time(raw["finished_at"])
    if started is None or finished is None:
        raise ValueError("history entry without start or finish time")
    return HistoryEntry(
        rotation_id=raw["rotation_id"],
        generation=int(raw["generation"]),
        new_id=raw["new_id"],
        retired_ids=tuple(raw.get("retired_ids") or ()),
        started_at=started,
        stored_at=_time(raw.get("stored_at")),
        confirmed_at=_time(raw.get("confirmed_at")),
        confirmed_by=raw.get("confirmed_by"),
        finished_at=finished,
        emergency=bool(raw.get("emergency", False)),
    )


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamps must carry a time zone")
    return parsed


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
