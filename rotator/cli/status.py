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
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rotator.cli.context import EXIT_NEEDS_OPERATOR, EXIT_OK, Context
from rotator.config import TargetSettings
from rotator.core.observation import ConsumerView
from rotator.core.record import Phase, Record
from rotator.durations import format_duration
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


def status(ctx: Context, target: str | None, *, as_json: bool, history: bool) -> int:
    settings = ctx.settings()
    names = [target] if target else [t.name for t in settings.targets]
    statuses = []
    with ctx.open(settings) as parts:
        try:
            with deadline.within(STATUS_TIMEOUT):
                for name in names:
                    spec = settings.target(name)
                    record, consumer = parts.reconciler.record(name)
                    upcoming = parts.reconciler.next_rotation_at(spec, record) if record else None
                    statuses.append(
                        target_status(spec, record, consumer, upcoming, history=history)
                    )
        except VaultUnavailable as e:
            raise VaultUnavailable(
                f"cannot show the targets' state: Vault at {settings.vault.address} is "
                f"unreachable. {e.message}",
                operation=e.operation,
            ) from e
    use_json = as_json or not sys.stdout.isatty()
    print(render_json(statuses) if use_json else render_table(statuses))
    return EXIT_NEEDS_OPERATOR if any(s.phase == "blocked" for s in statuses) else EXIT_OK


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
    )


def render_json(statuses: list[TargetStatus]) -> str:
    return json.dumps([_public(s) for s in statuses], indent=2)


def render_table(statuses: list[TargetStatus]) -> str:
    columns = (
        "name",
        "phase",
        "current_secret_id",
        "pending_secret_id",
        "next_rotation_at",
        "deadline",
    )
    headers = ("TARGET", "PHASE", "CURRENT", "PENDING", "NEXT ROTATION", "DEADLINE")
    rows = [[str(getattr(s, c) or "-") for c in columns] for s in statuses]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    for s in statuses:
        if s.blocked_reason:
            lines.append(f"{s.name}: BLOCKED: {s.blocked_reason}")
        elif s.last_error:
            lines.append(f"{s.name}: last error: {s.last_error}")
        for entry in s.history:
            took = entry["seconds"]
            phases = ", ".join(
                f"{phase} {format_duration(seconds)}"
                for phase, seconds in took.items()
                if seconds is not None
            )
            lines.append(
                f"{s.name}: {entry['finished_at']} {entry['rotation_id']} new {entry['new_id']} "
                f"retired {','.join(entry['retired_ids']) or '-'} "
                f"confirmed by {entry['confirmed_by'] or '-'} ({phases})"
            )
    return "\n".join(lines)


def _public(status: TargetStatus) -> dict[str, Any]:
    data = asdict(status)
    if not data["history"]:
        data.pop("history")
    return data


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
