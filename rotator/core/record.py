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

This module owns the ``Record``, its schema versions and the errors of reading one back; the
nested parts (``Phase``, ``Lease``, ``Request``, ...) live in ``rotator.core.record_parts`` and the
field-by-field encoding and parsing in ``rotator.core.record_storage``. Every name of theirs that
callers use is importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from rotator.core import record_storage
from rotator.core.record_parts import (
    BEHIND_LIMIT,
    IN_USE_LIMIT,
    ROTATING,
    Abort,
    AuditEntry,
    Binding,
    ConsumerProgress,
    HistoryEntry,
    Lease,
    Pause,
    Phase,
    Request,
    Restoring,
)
from rotator.errors import PermanentError
from rotator.redaction import SecretValue

# The parts live in ``rotator.core.record_parts``; every caller imports them from here.
__all__ = [
    "BASE_SCHEMA_VERSION",
    "BEHIND_LIMIT",
    "HISTORY_LIMIT",
    "IN_USE_LIMIT",
    "KNOWN_IDS_LIMIT",
    "OWNED_NAMES_LIMIT",
    "PACKED_SCHEMA_VERSION",
    "READABLE_SCHEMAS",
    "ROLLOUT_SCHEMA_VERSION",
    "ROTATING",
    "SCHEMA_VERSION",
    "STRING_BUDGET",
    "Abort",
    "AuditEntry",
    "Binding",
    "ConsumerProgress",
    "HistoryEntry",
    "Lease",
    "NewerRecordError",
    "Pause",
    "Phase",
    "Record",
    "RecordError",
    "Request",
    "Restoring",
]

#: The schema this rotator writes while a record carries an abort (requested, or backing out);
#: schema 3 when it carries a consumers rollout (``rollout``, ``stalled_at``) or a pause; any
#: other record is written as ``BASE_SCHEMA_VERSION``, exactly as before them. So an older
#: rotator keeps acting on every target but refuses what it would get wrong: a consumers
#: rollout it would retire on its grace alone, a paused target it would act on, an abort it
#: would ignore (and finish the rotation an operator backed out of).
SCHEMA_VERSION = 4
ROLLOUT_SCHEMA_VERSION = 3
BASE_SCHEMA_VERSION = 2
#: A record too complex for Vault's JSON limits as it is (many consumers, long histories) is
#: written whole as one string under this schema: ``{"schema_version": 5, "target": ...,
#: "packed": "<the record's usual JSON>"}``. Rotators before it refuse such a record (they
#: could not write it back either).
PACKED_SCHEMA_VERSION = 5
#: Vault and OpenBao refuse a request holding 1,000 JSON strings or more (keys included); a
#: record past this many is packed, leaving room for the request's own keys.
STRING_BUDGET = 800
READABLE_SCHEMAS = frozenset(
    {1, BASE_SCHEMA_VERSION, ROLLOUT_SCHEMA_VERSION, SCHEMA_VERSION, PACKED_SCHEMA_VERSION}
)
HISTORY_LIMIT = 20
OWNED_NAMES_LIMIT = 64
KNOWN_IDS_LIMIT = 64


class RecordError(PermanentError):
    """A stored record rotator cannot read: damaged (edited by hand, say); ``version`` is the
    KV version that holds it, when known."""

    def __init__(self, message: str, *, version: int | None = None) -> None:
        super().__init__(message)
        self.version = version


class NewerRecordError(RecordError):
    """A record written by a newer rotator (a later ``schema_version``): upgrade to read it."""


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
    #: The fingerprint of the current secret's material as the consumers' path held it when
    #: this rotation started: what an abort checks the KV version it restores against.
    current_fingerprint: str | None = None
    #: An operator's ``rotator abort`` waiting to be served, and the back-out it started.
    abort: Abort | None = None
    restoring: Restoring | None = None
    #: The last ``AUDIT_LIMIT`` entries of the target's audit trail (the full one is in logs).
    audit: tuple[AuditEntry, ...] = ()

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
        newest = self.abort is not None or self.restoring is not None
        newer = newest or bool(self.rollout) or self.stalled_at is not None
        newer = newer or self.paused is not None
        schema = (
            SCHEMA_VERSION if newest else ROLLOUT_SCHEMA_VERSION if newer else BASE_SCHEMA_VERSION
        )
        data: dict[str, Any] = {"schema_version": schema}
        for f in fields(self):
            value = getattr(self, f.name)
            if (f.name in _SCHEMA_3_FIELDS and not newer) or (
                f.name in _SCHEMA_4_FIELDS and not newest
            ):
                continue
            data[f.name] = record_storage.encode(f.name, value)
        if record_storage.count_strings(data) > STRING_BUDGET:
            packed = json.dumps(data, separators=(",", ":"))
            return {
                "schema_version": PACKED_SCHEMA_VERSION,
                "target": self.target,
                "packed": packed,
            }
        return data

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> Record:
        """Parse what ``to_storage`` wrote, in schema 4, 3 or 2, or the first one (version 1, read
        as if it were unbound with no request pending). ``RecordError`` names the problem,
        never a value: the record holds material."""
        version = data.get("schema_version")
        newest = max(READABLE_SCHEMAS)
        newer = isinstance(version, int) and not isinstance(version, bool) and version > newest
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
        if version == PACKED_SCHEMA_VERSION:
            return cls.from_storage(_unpacked(data))
        try:
            record = cls(**record_storage.decode(data))
        except (KeyError, TypeError, ValueError) as e:
            raise RecordError(f"state record is damaged ({type(e).__name__}: {e})") from None
        return _from_version_1(record) if version == 1 else record


def _unpacked(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The record inside a packed one (``PACKED_SCHEMA_VERSION``), itself never packed."""
    try:
        inner = json.loads(data["packed"])
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"state record is damaged (packed: {type(e).__name__})") from None
    if not isinstance(inner, dict) or inner.get("schema_version") == PACKED_SCHEMA_VERSION:
        raise RecordError("state record is damaged (packed: not a record)")
    return inner


_SCHEMA_3_FIELDS = frozenset({"rollout", "stalled_at", "paused"})
_SCHEMA_4_FIELDS = frozenset({"abort", "restoring"})


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
