"""The persisted state of one target: a frozen, versioned record, stored in Vault KV v2.

One record per target lives at ``<mount>/<state_path>/<target>`` and is written only with
check-and-set: the KV version is the fencing token that makes "one rotation at a time, across all
processes" true. Records are never mutated; ``rotator.core.transitions`` names every change.

While a rotation is between "created at Intercom" and "done", the record also carries the new
secret's material (``pending_secret``). That write is the commit point of a rotation: once it
succeeds the material is in Vault and can never be lost, and the consumers' path is an idempotent
projection of it that any process can (re)write. The material is dropped from the record when the
rotation completes; the consumers' path then holds the only copy.

Every time in a record is on the clock all processes share (Vault's, see
``rotator.vault.clock``), never on the wall clock of the process that wrote it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from rotator.errors import PermanentError
from rotator.redaction import SecretValue

#: The schema this rotator writes when a record carries a consumers rollout (``rollout``,
#: ``stalled_at``) or a pause; any other record is written as ``BASE_SCHEMA_VERSION``, exactly
#: as before them, so an older rotator keeps acting on every target but refuses a consumers
#: rollout it would retire on its grace alone, and a paused target it would act on.
SCHEMA_VERSION = 3
BASE_SCHEMA_VERSION = 2
READABLE_SCHEMAS = frozenset({1, BASE_SCHEMA_VERSION, SCHEMA_VERSION})
HISTORY_LIMIT = 20
#: Bounds of a consumer's persisted summary: the record stays small whatever a fleet answers.
IN_USE_LIMIT = 8
BEHIND_LIMIT = 16
OWNED_NAMES_LIMIT = 64
KNOWN_IDS_LIMIT = 64


class Phase(enum.StrEnum):
    IDLE = "idle"
    CREATING = "creating"
    AWAITING_ROLLOUT = "awaiting_rollout"
    RETIRING = "retiring"
    BLOCKED = "blocked"


#: The phases of a rotation under way (or of an adoption waiting for its rollout).
ROTATING = frozenset({Phase.CREATING, Phase.AWAITING_ROLLOUT, Phase.RETIRING})


class RecordError(PermanentError):
    """A stored record rotator cannot read: damaged (edited by hand, say); ``version`` is the
    KV version that holds it, when known."""

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


class NewerRecordError(RecordError):
    """A record written by a newer rotator (a later ``schema_version``): upgrade to read it."""


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


@dataclass(frozen=True, slots=True)
class Pause:
    """An operator's ``rotator pause``: no step with a side effect until ``rotator resume``."""

    by: str
    at: datetime
    reason: str


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
    #: Ids whose material reached Vault (committed, stored, or held as current): never orphans,
    #: and never deleted without a confirmation or a grace period.
    known_ids: tuple[str, ...] = ()
    #: The secret consumers held before this rotation (after it: the new one).
    current_id: str | None = None
    pending_id: str | None = None
    pending_secret: SecretValue | None = None
    pending_created_at: int | None = None
    #: The rotation under way adopts ``pending_id`` (``rotator adopt``): no material here, the
    #: consumers' path holds it, with this fingerprint (a short digest, not the material).
    adoption: bool = False
    pending_fingerprint: str | None = None
    #: Secrets to delete, in order; every id here passed the ownership rules when added.
    old_ids: tuple[str, ...] = ()
    #: Secrets this rotation has deleted so far (Intercom answered 204 or its own 404).
    retired_ids: tuple[str, ...] = ()
    started_at: datetime | None = None
    #: When Vault created the version of the consumers' path that holds the new secret.
    stored_at: datetime | None = None
    #: The consumers' path version that store wrote (or found): a path rewritten since, even
    #: with the same secret, may have handed consumers something else in between.
    stored_version: int | None = None
    deadline: datetime | None = None
    #: A confirmation of the secret *as stored now*: cleared whenever it is stored again.
    confirmed_at: datetime | None = None
    confirmed_by: str | None = None
    emergency: bool = False
    last_rotation_at: datetime | None = None
    #: Consecutive failures, and when to try again (exponential backoff).
    attempts: int = 0
    retry_at: datetime | None = None
    last_error: str | None = None
    #: The Intercom scope the last failure lacked (a 403), so ``doctor`` names it without
    #: reading the message.
    missing_scope: str | None = None
    blocked_reason: str | None = None
    resume_phase: Phase | None = None
    lease: Lease | None = None
    request: Request | None = None
    binding: Binding | None = None
    #: Since when Intercom's lists have not shown the new secret (awaiting rollout) or the
    #: consumers' secret (idle): lists lag, so only a long absence means anything.
    pending_absent_since: datetime | None = None
    consumer_absent_since: datetime | None = None
    history: tuple[HistoryEntry, ...] = field(default=())
    #: Named consumers' progress on the secret awaiting rollout (``rotator.core.rollout``).
    rollout: tuple[ConsumerProgress, ...] = ()
    #: Set when a grace deadline passed while a probe still saw consumers on the old secret.
    stalled_at: datetime | None = None
    paused: Pause | None = None

    def __repr__(self) -> str:
        # The dataclass repr would be long; the material is a SecretValue and safe either way.
        return (
            f"Record(target={self.target!r}, phase={self.phase.value}, "
            f"generation={self.generation}, rotation_id={self.rotation_id!r}, "
            f"current_id={self.current_id!r}, pending_id={self.pending_id!r}, "
            f"old_ids={self.old_ids!r})"
        )

    @property
    def rotating(self) -> bool:
        """A rotation (or adoption) is under way, blocked or not."""
        phase = self.resume_phase if self.phase is Phase.BLOCKED else self.phase
        return phase in ROTATING

    def remember_name(self, name: str) -> tuple[str, ...]:
        names = (*self.owned_names, name)
        return names[-OWNED_NAMES_LIMIT:]

    def remember_id(self, secret_id: str | None) -> tuple[str, ...]:
        if not secret_id or secret_id in self.known_ids:
            return self.known_ids
        return (*self.known_ids, secret_id)[-KNOWN_IDS_LIMIT:]

    # --- storage -------------------------------------------------------------------------------

    def to_storage(self) -> dict[str, Any]:
        """The KV data: JSON types only. The one place the pending material is revealed."""
        newest = bool(self.rollout) or self.stalled_at is not None or self.paused is not None
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION if newest else BASE_SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SCHEMA_3_FIELDS and not newest:
                continue
            if f.name == "pending_secret":
                value = value.reveal() if value is not None else None
            elif f.name in {"history", "rollout"}:
                value = [asdict(h) for h in value]
            elif f.name in {"lease", "request", "binding", "paused"}:
                value = asdict(value) if value is not None else None
            data[f.name] = _jsonable(value)
        return data

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> Record:
        """Parse what ``to_storage`` wrote, in schema 3 or 2, or the first one (version 1, read
        as if it were unbound with no request pending). ``RecordError`` names the problem,
        never a value: the record holds material."""
        version = data.get("schema_version")
        newer = (
            isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        )
        readable = ", ".join(str(v) for v in sorted(READABLE_SCHEMAS, reverse=True))
        if version not in READABLE_SCHEMAS and not newer:
            # Missing, 0, text: not a schema any rotator wrote, so a hand edit (roll back).
            raise RecordError(
                f"state record is damaged (schema_version {version!r} is none that rotator "
                f"writes; this one reads {readable})"
            )
        if version not in READABLE_SCHEMAS:
            raise NewerRecordError(
                f"state record has schema_version {version!r}; this rotator reads "
                f"{readable}. Upgrade rotator (or restore the record) before it acts."
            )
        try:
            record = cls(
                target=_text(data["target"]),
                phase=Phase(data["phase"]),
                generation=_count(data["generation"]),
                rotation_id=_optional_text(data.get("rotation_id")),
                planned_name=_optional_text(data.get("planned_name")),
                owned_names=_texts(data.get("owned_names")),
                known_ids=_texts(data.get("known_ids")),
                current_id=_optional_text(data.get("current_id")),
                pending_id=_optional_text(data.get("pending_id")),
                pending_secret=(
                    SecretValue(data["pending_secret"]) if data.get("pending_secret") else None
                ),
                pending_created_at=data.get("pending_created_at"),
                adoption=bool(data.get("adoption", False)),
                pending_fingerprint=_optional_text(data.get("pending_fingerprint")),
                old_ids=_texts(data.get("old_ids")),
                retired_ids=_texts(data.get("retired_ids")),
                started_at=_time(data.get("started_at")),
                stored_at=_time(data.get("stored_at")),
                stored_version=_optional_count(data.get("stored_version")),
                deadline=_time(data.get("deadline")),
                confirmed_at=_time(data.get("confirmed_at")),
                confirmed_by=_optional_text(data.get("confirmed_by")),
                emergency=bool(data.get("emergency", False)),
                last_rotation_at=_time(data.get("last_rotation_at")),
                attempts=_count(data.get("attempts", 0)),
                retry_at=_time(data.get("retry_at")),
                last_error=_optional_text(data.get("last_error")),
                missing_scope=_optional_text(data.get("missing_scope")),
                blocked_reason=_optional_text(data.get("blocked_reason")),
                resume_phase=Phase(data["resume_phase"]) if data.get("resume_phase") else None,
                lease=Lease(**data["lease"]) if data.get("lease") else None,
                request=_request(data.get("request")),
                binding=Binding(**data["binding"]) if data.get("binding") else None,
                pending_absent_since=_time(data.get("pending_absent_since")),
                consumer_absent_since=_time(data.get("consumer_absent_since")),
                history=tuple(_history(h) for h in data.get("history") or ()),
                rollout=tuple(_progress(p) for p in data.get("rollout") or ()),
                stalled_at=_time(data.get("stalled_at")),
                paused=_pause(data.get("paused")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"state record is damaged ({type(e).__name__}: {e})") from None
        return _from_version_1(record) if version == 1 else record


_SCHEMA_3_FIELDS = frozenset({"rollout", "stalled_at", "paused"})


def _from_version_1(record: Record) -> Record:
    """A version 1 rollout's deadline was one process's wall clock plus the grace, and its
    confirmation may predate the store: the rollout starts again, judged on Vault's clock."""
    phase = record.resume_phase if record.phase is Phase.BLOCKED else record.phase
    if record.pending_id is None or phase not in {Phase.AWAITING_ROLLOUT, Phase.RETIRING}:
        return record
    restarted = replace(record, stored_at=None, deadline=None, confirmed_at=None, confirmed_by=None)
    if record.phase is Phase.BLOCKED:
        return replace(restarted, resume_phase=Phase.AWAITING_ROLLOUT)
    return replace(restarted, phase=Phase.AWAITING_ROLLOUT)


def _request(raw: Any) -> Request | None:
    if not raw:
        return None
    at = _time(raw["at"])
    if at is None:
        raise ValueError("a request without its time")
    return Request(
        emergency=bool(raw["emergency"]),
        by=_text(raw["by"]),
        at=at,
        leaked=_optional_text(raw.get("leaked")),
    )


def _pause(raw: Any) -> Pause | None:
    if not raw:
        return None
    at = _time(raw["at"])
    if at is None:
        raise ValueError("a pause without its time")
    return Pause(by=_text(raw["by"]), at=at, reason=_text(raw["reason"]))


def _history(raw: Mapping[str, Any]) -> HistoryEntry:
    started = _time(raw["started_at"])
    finished = _time(raw["finished_at"])
    if started is None or finished is None:
        raise ValueError("history entry without start or finish time")
    return HistoryEntry(
        rotation_id=_text(raw["rotation_id"]),
        generation=_count(raw["generation"]),
        new_id=_text(raw["new_id"]),
        retired_ids=_texts(raw.get("retired_ids")),
        started_at=started,
        stored_at=_time(raw.get("stored_at")),
        confirmed_at=_time(raw.get("confirmed_at")),
        confirmed_by=_optional_text(raw.get("confirmed_by")),
        finished_at=finished,
        emergency=bool(raw.get("emergency", False)),
    )


def _progress(raw: Mapping[str, Any]) -> ConsumerProgress:
    return ConsumerProgress(
        name=_text(raw["name"]),
        secret_id=_text(raw["secret_id"]),
        stored_version=_count(raw["stored_version"]),
        confirmed_at=_time(raw.get("confirmed_at")),
        confirmed_by=_optional_text(raw.get("confirmed_by")),
        streak=_count(raw.get("streak", 0)),
        streak_at=_time(raw.get("streak_at")),
        found=_count(raw.get("found", 0)),
        switched=_count(raw.get("switched", 0)),
        in_use=_texts(raw.get("in_use"))[:IN_USE_LIMIT],
        behind=_texts(raw.get("behind"))[:BEHIND_LIMIT],
        problem=_optional_text(raw.get("problem")),
        since=_time(raw.get("since")),
    )


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a string was expected, not {type(value).__name__}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in value or ())


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("a count must be a whole number, 0 or more")
    return value


def _optional_count(value: Any) -> int | None:
    return None if value is None else _count(value)


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(_text(value))
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
