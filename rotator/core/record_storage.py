"""How a state record is written to and read back from Vault KV: JSON types in, typed parts out.

``Record.to_storage`` and ``Record.from_storage`` (``rotator.core.record``) stay the public API
and keep the schema decisions (which version to write, which versions to read); this module owns
the field-by-field encoding and the strict parsing of every field and nested part. A parser
raises ``KeyError``, ``TypeError`` or ``ValueError`` naming the problem, never a value (the
record holds material): ``Record.from_storage`` turns them into one ``RecordError``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rotator.core.record_parts import (
    BEHIND_LIMIT,
    IN_USE_LIMIT,
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
from rotator.redaction import SecretValue


def encode(name: str, value: Any) -> Any:
    """The KV form of the record field ``name``: JSON types only. The one place the pending
    material is revealed."""
    if name == "pending_secret":
        value = value.reveal() if value is not None else None
    elif name == "audit":
        # One string for the whole trail: Vault and OpenBao refuse a request of 1,000 strings
        # or more, and the trail would be most of them (``count_strings``).
        return json.dumps(_jsonable([asdict(a) for a in value]), separators=(",", ":"))
    elif name in {"history", "rollout"}:
        value = [asdict(h) for h in value]
    elif name in {"lease", "request", "binding", "paused", "abort", "restoring"}:
        value = asdict(value) if value is not None else None
        if name == "request" and value is not None and not value["resumed"]:
            del value["resumed"]  # written only when set: records stay as older rotators wrote
    return _jsonable(value)


def decode(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``Record`` fields that ``encode`` wrote, parsed strictly (schema 3, 2 or 1)."""
    return {
        "target": _text(data["target"]),
        "phase": Phase(data["phase"]),
        "generation": _count(data["generation"]),
        "rotation_id": _optional_text(data.get("rotation_id")),
        "planned_name": _optional_text(data.get("planned_name")),
        "owned_names": _texts(data.get("owned_names")),
        "known_ids": _texts(data.get("known_ids")),
        "current_id": _optional_text(data.get("current_id")),
        "pending_id": _optional_text(data.get("pending_id")),
        "pending_secret": (
            SecretValue(data["pending_secret"]) if data.get("pending_secret") else None
        ),
        "pending_created_at": data.get("pending_created_at"),
        "adoption": bool(data.get("adoption", False)),
        "pending_fingerprint": _optional_text(data.get("pending_fingerprint")),
        "old_ids": _texts(data.get("old_ids")),
        "retired_ids": _texts(data.get("retired_ids")),
        "started_at": _time(data.get("started_at")),
        "stored_at": _time(data.get("stored_at")),
        "stored_version": _optional_count(data.get("stored_version")),
        "deadline": _time(data.get("deadline")),
        "confirmed_at": _time(data.get("confirmed_at")),
        "confirmed_by": _optional_text(data.get("confirmed_by")),
        "emergency": bool(data.get("emergency", False)),
        "last_rotation_at": _time(data.get("last_rotation_at")),
        "attempts": _count(data.get("attempts", 0)),
        "retry_at": _time(data.get("retry_at")),
        "last_error": _optional_text(data.get("last_error")),
        "missing_scope": _optional_text(data.get("missing_scope")),
        "blocked_reason": _optional_text(data.get("blocked_reason")),
        "resume_phase": Phase(data["resume_phase"]) if data.get("resume_phase") else None,
        "lease": Lease(**data["lease"]) if data.get("lease") else None,
        "request": _request(data.get("request")),
        "binding": Binding(**data["binding"]) if data.get("binding") else None,
        "pending_absent_since": _time(data.get("pending_absent_since")),
        "consumer_absent_since": _time(data.get("consumer_absent_since")),
        "history": tuple(_history(h) for h in data.get("history") or ()),
        "rollout": tuple(_progress(p) for p in data.get("rollout") or ()),
        "stalled_at": _time(data.get("stalled_at")),
        "paused": _pause(data.get("paused")),
        "current_fingerprint": _optional_text(data.get("current_fingerprint")),
        "abort": _abort(data.get("abort")),
        "restoring": _restoring(data.get("restoring")),
        "audit": tuple(_audit(a) for a in _unpacked(data.get("audit"))),
    }


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
        resumed=raw.get("resumed") is True,
    )


def _pause(raw: Any) -> Pause | None:
    if not raw:
        return None
    at = _time(raw["at"])
    if at is None:
        raise ValueError("a pause without its time")
    return Pause(by=_text(raw["by"]), at=at, reason=_text(raw["reason"]))


def _abort(raw: Any) -> Abort | None:
    if not raw:
        return None
    at = _time(raw["at"])
    if at is None:
        raise ValueError("an abort request without its time")
    return Abort(
        by=_text(raw["by"]),
        at=at,
        reason=_text(raw["reason"]),
        rotation_id=_text(raw["rotation_id"]),
    )


def count_strings(value: Any) -> int:
    """How many JSON strings ``value`` holds, keys included: what Vault's and OpenBao's
    listeners count against their limit of JSON input complexity (1,000 strings a request)."""
    if isinstance(value, str):
        return 1
    if isinstance(value, Mapping):
        return sum(1 + count_strings(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(count_strings(v) for v in value)
    return 0


def _unpacked(raw: Any) -> list[Any]:
    """A packed list (one JSON string), or a list as an earlier build wrote it."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        raw = json.loads(raw)
    if not isinstance(raw, list):
        raise TypeError(f"a list was expected, not {type(raw).__name__}")
    return raw


def _audit(raw: Mapping[str, Any]) -> AuditEntry:
    at = _time(raw["at"])
    if at is None:
        raise ValueError("an audit entry without its time")
    return AuditEntry(
        at=at,
        event=_text(raw["event"]),
        by=_text(raw["by"]),
        why=_text(raw["why"]),
        rotation_id=_optional_text(raw.get("rotation_id")),
        secret_id=_optional_text(raw.get("secret_id")),
        via=_optional_text(raw.get("via")),
    )


def _restoring(raw: Any) -> Restoring | None:
    if not raw:
        return None
    at = _time(raw["at"])
    if at is None:
        raise ValueError("a restore without its time")
    return Restoring(
        rotation_id=_text(raw["rotation_id"]),
        by=_text(raw["by"]),
        at=at,
        reason=_text(raw["reason"]),
        abandoned_id=_optional_text(raw.get("abandoned_id")),
    )


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
        outcome=_text(raw.get("outcome", "completed")),
        by=_optional_text(raw.get("by")),
        reason=_optional_text(raw.get("reason")),
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
