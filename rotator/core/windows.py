"""Rotation windows, as far as decisions go: whether a step may happen *now*.

A target may name windows (``windows = [{cron, duration, timezone}]``); the reconciler works
out, on Vault's clock, whether ``now`` lies inside one and when the next opens
(``rotator.config.windows``, which knows time zones and cron), and hands the answer to the
machine as a plain ``WindowState`` in the observation. This module reads nothing and keeps the
rules:

- a *scheduled* rotation starts only inside a window (due outside one: it rests until the next
  opening). ``rotate-now``, a consumers' secret gone at Intercom, or nothing for consumers to read
  start at once: someone asked, or consumers would otherwise have nothing;
- an old secret is retired only inside a window, even when its rollout is done (a rotation that
  started inside one may wait for the next to retire): both secrets stay live meanwhile;
- an emergency ignores windows (a leaked secret is retired as soon as its rollout allows), and
  so does the rotation an emergency ``rotate-now`` waits behind (a back-out's retirement of the
  abandoned secret: the emergency is served only once it ends).

A target without windows has ``Observation.window is None`` and behaves as before windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rotator.core.record import Record


@dataclass(frozen=True, slots=True)
class WindowState:
    """Whether a window is open now; ``opens_at``: the next opening when closed (``None``: none
    within the search horizon), ``closes_at``: the end of the open one."""

    open: bool
    opens_at: datetime | None = None
    closes_at: datetime | None = None


def outside(window: WindowState | None) -> str | None:
    """The reason a step waits for a window, or ``None`` when it may happen now."""
    if window is None or window.open:
        return None
    when = window.opens_at.isoformat() if window.opens_at else "a window opens (none is due soon)"
    return f"outside its window until {when}"


def holds_start(window: WindowState | None, *, scheduled: bool) -> str | None:
    """Why a rotation may not start now: only a scheduled start waits for a window."""
    return outside(window) if scheduled else None


def holds_retirement(record: Record, window: WindowState | None) -> str | None:
    """Why the old secret may not be retired now: outside a window, unless an emergency, or
    an emergency ``rotate-now`` about a secret of this rotation waits for it to end."""
    return None if record.emergency or _emergency_waits(record) else outside(window)


def _emergency_waits(record: Record) -> bool:
    asked = record.request
    leaked = asked.leaked if asked is not None and asked.emergency else None
    return leaked is not None and leaked in {record.current_id, record.pending_id}
