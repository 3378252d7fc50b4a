"""``rotator status``: one summary per target, as JSON or as a table.

Only ids, phases, times and reasons: never material (the record's ``pending_secret`` is not
read here at all).

An operator runs ``status`` when something is wrong, often Vault itself: its reads run within
``STATUS_TIMEOUT`` seconds in all (``rotator.vault.deadline``), and a Vault that does not answer
is said to be unreachable (exit 1) rather than holding the terminal for Vault's timeouts and
retries (53 s with Vault paused).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from rotator.cli.check import reading
from rotator.cli.context import EXIT_NEEDS_OPERATOR, EXIT_OK, Context, Parts
from rotator.cli.leases import read_lease
from rotator.cli.status_table import render_table
from rotator.config import Settings, TargetSettings
from rotator.config.consumers import consumer_rules
from rotator.config.windows import window_state
from rotator.core import rollout
from rotator.core.observation import ConsumerView
from rotator.core.operator_requests import joinable
from rotator.core.record import NewerRecordError, Phase, Record, RecordError
from rotator.core.windows import WindowState
from rotator.errors import RotatorError
from rotator.redaction import hide_userinfo
from rotator.vault import VaultUnavailable, deadline

#: Seconds ``status`` may spend reading Vault: a few healthy round trips per target, at most.
STATUS_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class TargetStatus:
    name: str
    phase: str
    current_secret_id: str | None
    pending_secret_id: str | None
    rotation_id: str | None
    generation: int
    next_rotation_at: str | None
    deadline: str | None
    confirmed_at: str | None
    last_rotation_at: str | None
    last_error: str | None
    blocked_reason: str | None
    attempts: int
    retry_at: str | None
    consumer_secret_id: str | None
    schedule: str
    confirmation: str
    history: list[dict[str, Any]]
    #: The lease in the record (``rotator.cli.leases``): who acts on the target now.
    lease: dict[str, Any] | None = None
    #: Named consumers' standing on the secret awaiting rollout (``rotator.core.rollout``).
    consumers: list[dict[str, Any]] = field(default_factory=list)
    #: The grace deadline passed while consumers are behind: retiring waits for them.
    stalled: bool = False
    stalled_since: str | None = None
    #: An operator's pause (``rotator pause``): by, at, reason; nothing acts until resumed.
    paused: dict[str, Any] | None = None
    #: The target's rotation windows now (``rotator.config.windows``): open, opens_at,
    #: closes_at; ``None`` for a target without windows.
    window: dict[str, Any] | None = None
    #: The record's audit trail (``rotator.core.audit``), with ``--history``: newest last.
    audit: list[dict[str, Any]] = field(default_factory=list)
    #: An abort waiting to be served, or the back-out under way: who, why, of which rotation.
    aborting: dict[str, Any] | None = None
    #: An operator's rotate-now recorded and not yet served: by, at, emergency, and what it
    #: waits for (``rotator.core.operator_requests``).
    requested: dict[str, Any] | None = None


def status(ctx: Context, target: str | None, *, as_json: bool, history: bool) -> int:
    settings = ctx.settings()
    names = [target] if target else [t.name for t in settings.targets]
    statuses = []
    with reading(ctx, settings) as parts:
        try:
            with deadline.within(STATUS_TIMEOUT):
                for name in names:
                    statuses.append(_one(parts, settings, name, history=history))
        except VaultUnavailable as e:
            raise VaultUnavailable(
                f"cannot show the targets' state: Vault at {settings.vault.address} is "
                f"unreachable. {e.message}",
                operation=e.operation,
            ) from e
    use_json = as_json or not sys.stdout.isatty()
    # A record written before URLs lost their passwords may still quote one in a reason.
    shown = render_json(statuses, history=history) if use_json else render_table(statuses)
    print(hide_userinfo(shown))
    troubled = any(s.phase in {"blocked", UNREADABLE} or s.stalled for s in statuses)
    return EXIT_NEEDS_OPERATOR if troubled else EXIT_OK


def _one(parts: Parts, settings: Settings, name: str, *, history: bool) -> TargetStatus:
    spec = settings.target(name)
    try:
        record, consumer = parts.reconciler.record(name)
    except RecordError as e:
        # One unreadable record must not hide the others: it is named, with the fix.
        return unreadable_status(spec, e, damaged_record_fix(parts, name, e))
    upcoming = parts.reconciler.next_rotation_at(spec, record) if record else None
    shown = target_status(spec, record, consumer, upcoming, history=history)
    shown = replace(shown, window=window_view(window_state(spec.windows, parts.reconciler.clock())))
    return with_lease(parts, shown) if record and record.lease else shown


#: The phase ``status`` shows for a target whose record cannot be read.
UNREADABLE = "unknown"


def damaged_record_fix(parts: Parts, name: str, error: RecordError) -> str:
    """What to do about a record that does not read (``status`` and ``doctor`` say the same):
    nothing here for a newer schema (its message says to upgrade); else roll back to the
    newest version that reads, found by reading them, or start over."""
    if isinstance(error, NewerRecordError):
        return ""
    where = f"{parts.settings.vault.mount}/{parts.store.key(name)}"
    good = None
    if error.version is not None and error.version > 1:
        try:
            good = parts.store.last_good_version(name, below=error.version)
        except RotatorError:  # the advice below still holds; the read is only a refinement
            good = None
    if good is not None:
        return (
            f"if it was edited by hand, restore the last version that reads (version {good}): "
            f"vault kv rollback -version={good} {where}"
        )
    return (
        "if it was edited by hand and no earlier version reads, delete it to start over: "
        f"vault kv metadata delete {where}"
    )


def unreadable_status(target: TargetSettings, error: RecordError, fix: str) -> TargetStatus:
    """A target whose record cannot be read, and what to do about it."""
    reason = f"{error.message.rstrip('.')}; {fix}" if fix else error.message
    return TargetStatus(
        name=target.name,
        phase=UNREADABLE,
        current_secret_id=None,
        pending_secret_id=None,
        rotation_id=None,
        generation=0,
        next_rotation_at=None,
        deadline=None,
        confirmed_at=None,
        last_rotation_at=None,
        last_error=reason,
        blocked_reason=None,
        attempts=0,
        retry_at=None,
        consumer_secret_id=None,
        schedule=target.schedule.describe(),
        confirmation=target.confirmation,
        history=[],
    )


def target_status(
    target: TargetSettings,
    record: Record | None,
    consumer: ConsumerView,
    next_rotation_at: datetime | None,
    *,
    history: bool = False,
) -> TargetStatus:
    rec = record or Record(target=target.name, current_id=consumer.intercom_id)
    next_at = next_rotation_at if rec.phase is Phase.IDLE else None
    return TargetStatus(
        name=target.name,
        phase=rec.phase.value,
        current_secret_id=rec.current_id,
        pending_secret_id=rec.pending_id,
        rotation_id=rec.rotation_id if rec.phase is not Phase.IDLE else None,
        generation=rec.generation,
        next_rotation_at=_iso(next_at) if record is not None else "on the next pass",
        deadline=_iso(rec.deadline) if rec.phase is Phase.AWAITING_ROLLOUT else None,
        confirmed_at=_iso(rec.confirmed_at),
        last_rotation_at=_iso(rec.last_rotation_at),
        last_error=rec.last_error,
        blocked_reason=rec.blocked_reason,
        attempts=rec.attempts,
        retry_at=_iso(rec.retry_at),
        consumer_secret_id=consumer.intercom_id,
        schedule=target.schedule.describe(),
        confirmation=target.confirmation,
        history=[_history_row(asdict(h)) for h in rec.history] if history else [],
        audit=[_dated(asdict(a)) for a in rec.audit] if history else [],
        aborting=_aborting(rec),
        requested=_requested(rec),
        consumers=[
            {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(c).items()}
            for c in rollout.states(rec, consumer_rules(target.consumers), target.confirmation)
        ]
        if rec.rotating
        else [],
        stalled=rec.stalled_at is not None and rec.rotating,
        stalled_since=_iso(rec.stalled_at) if rec.rotating else None,
        paused=(
            {"by": rec.paused.by, "at": _iso(rec.paused.at), "reason": rec.paused.reason}
            if rec.paused is not None
            else None
        ),
    )


def window_view(window: WindowState | None) -> dict[str, Any] | None:
    """A window state as ``status --json`` shows it (times as ISO 8601 UTC)."""
    if window is None:
        return None
    return {
        "open": window.open,
        "opens_at": _iso(window.opens_at),
        "closes_at": _iso(window.closes_at),
    }


def with_lease(parts: Parts, shown: TargetStatus) -> TargetStatus:
    """``shown`` with its record's lease, read again with the time its version was written."""
    view = read_lease(parts, shown.name)
    return replace(shown, lease=asdict(view) | {"summary": view.sentence()} if view else None)


def render_json(statuses: list[TargetStatus], *, history: bool = False) -> str:
    """``history``: ``--history`` was asked for, so every target has its ``history`` and
    ``audit`` arrays, empty ones too (a script iterates them); without it, neither."""
    return json.dumps([_public(s, history=history) for s in statuses], indent=2)


def _public(status: TargetStatus, *, history: bool) -> dict[str, Any]:
    data = asdict(status)
    for key in ("history", "audit"):
        if not history and not data[key]:
            data.pop(key)
    return data


def _dated(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) if isinstance(v, datetime) else v for k, v in entry.items()}


def _requested(rec: Record) -> dict[str, Any] | None:
    """A recorded rotate-now not yet served, and what it waits for, for status."""
    request = rec.request
    if request is None:
        return None
    # A request joins no back-out or sweep of orphans: it starts its rotation once they end.
    behind = rec.rotating and not joinable(rec)
    then = "; its rotation starts once the back-out or sweep under way ends" if behind else ""
    if rec.paused is not None:
        waits = f"the pause holds it; 'rotator resume {rec.target}' lets the next pass serve it"
    elif rec.phase is Phase.BLOCKED and request.resumed:
        waits = (
            f"it resumed the block once and it blocked again; 'rotator resume {rec.target}' "
            "(or a new rotate-now) tries again"
        )
    elif rec.phase is Phase.BLOCKED:
        waits = f"the next pass resumes the block{then}"
    elif behind:
        waits = "its rotation starts once the back-out or sweep under way ends"
    else:
        waits = "the next pass serves it"
    kind = "emergency rotate-now" if request.emergency else "rotate-now"
    return {"kind": kind, "by": request.by, "at": _iso(request.at), "waits": waits}


def _aborting(rec: Record) -> dict[str, Any] | None:
    """An abort waiting for the next pass, or the back-out it started, for status."""
    if rec.abort is not None:
        a = rec.abort
        state = "waiting for the next pass to serve it"
        return {"rotation_id": a.rotation_id, "by": a.by, "reason": a.reason, "state": state}
    if rec.restoring is not None:
        r = rec.restoring
        state = (
            f"secret {rec.pending_id} is back at the consumers' path; {r.abandoned_id} is "
            "deleted once that is rolled out"
        )
        return {"rotation_id": r.rotation_id, "by": r.by, "reason": r.reason, "state": state}
    return None


def _history_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = {k: _iso(v) if isinstance(v, datetime) else v for k, v in entry.items()}
    # How long each phase took, in seconds: creating (to stored), awaiting rollout (to the
    # confirmation or the grace), retiring (to the end).
    started, stored = entry["started_at"], entry["stored_at"]
    confirmed, finished = entry["confirmed_at"], entry["finished_at"]
    awaited_until = confirmed if confirmed is not None and stored is not None else finished
    row["seconds"] = {
        "creating": _seconds(started, stored),
        "awaiting_rollout": _seconds(stored, awaited_until),
        "retiring": _seconds(awaited_until if stored is not None else None, finished),
    }
    return row


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
