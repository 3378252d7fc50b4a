"""``rotator status``'s table: a row per target, then a line for each thing an operator should
know about it (a pause, a closed window, a block or the last error, the lease, a stalled
rollout and its consumers, a waiting rotate-now, an abort, and with ``--history`` the past
rotations and the audit trail)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.core import rollout
from rotator.durations import format_duration

if TYPE_CHECKING:
    from rotator.cli.status import TargetStatus


def render_table(statuses: list[TargetStatus]) -> str:
    """The table, then each target's lines."""
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
        lines += _paused_line(s)
        if s.window is not None and not s.window["open"]:
            lines.append(f"{s.name}: outside its window until {s.window['opens_at'] or '-'}")
        if s.blocked_reason:
            lines.append(f"{s.name}: BLOCKED: {s.blocked_reason}")
        elif s.last_error:
            lines.append(f"{s.name}: last error: {s.last_error}")
        if s.lease:
            lines.append(f"{s.name}: {s.lease['summary']}")
        if s.stalled:
            lines.append(
                f"{s.name}: STALLED since {s.stalled_since}: its grace passed with consumers "
                f"behind (below); the old secret stays live. Fix them, or override: rotator "
                f"confirm {s.name} --consumer NAME (or rotate-now --emergency)"
            )
        lines += [f"{s.name}:   {_consumer_line(c)}" for c in s.consumers]
        if s.requested is not None:
            r = s.requested
            lines.append(
                f"{s.name}: {r['kind'].upper()} requested by {r['by']} at {r['at']}: {r['waits']}"
            )
        if s.aborting is not None:
            a = s.aborting
            lines.append(
                f"{s.name}: ABORT of rotation {a['rotation_id']} by {a['by']} ({a['reason']}): "
                f"{a['state']}"
            )
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
                + (
                    f" ABORTED by {entry['by']}: {entry['reason']}"
                    if entry["outcome"] == "aborted"
                    else ""
                )
            )
        lines += [
            f"{s.name}: {a['at']} {a['event']} by {a['by']}"
            + (f" [{a['secret_id']}]" if a["secret_id"] else "")
            + f": {a['why']}"
            for a in s.audit
        ]
    return "\n".join(lines)


def _paused_line(s: TargetStatus) -> list[str]:
    """``web: PAUSED by alice@ops since ...: why``, while an operator's pause holds it."""
    if s.paused is None:
        return []
    by, at, why = s.paused["by"], s.paused["at"], s.paused["reason"]
    return [f"{s.name}: PAUSED by {by} since {at}: {why} (rotator resume {s.name} to act again)"]


def _consumer_line(c: dict[str, Any]) -> str:
    """``web-backend  2/3 switched; 10.0.0.9:8080 on 101 (since ...)``, one consumer's line."""
    if c["state"] == "confirmed":
        return f"{c['name']}  confirmed ({c['confirmed_by']})"
    if c["kind"] == "hook":
        return f"{c['name']}  waiting for its confirmation"
    if c["found"] is None:
        return f"{c['name']}  not probed yet"
    detail = c["problem"] or "; ".join(c["behind"][: rollout.BEHIND_SHOWN])
    since = f" (since {c['since']})" if c["since"] else ""
    if not detail:
        detail = f"{c['streak']} of {c['stable_probes']} stable rounds"
    return f"{c['name']}  {c['switched']}/{c['found']} switched; {detail}{since}"
