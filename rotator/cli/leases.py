"""A held lease, as ``status`` and ``doctor`` show it: who holds it, since when its holder last
wrote, and from when another process may take it over.

A lease carries no time of its own (processes never compare clocks): its age is that of the
record's KV version, on Vault's clock, since a live holder writes a new nonce with every step.
Another process takes over once it has *seen* the same nonce unchanged for ``ttl`` of its own
clock, so ``takeover_from`` is the earliest moment, for a process that was already watching; one
that looks only later waits a whole ``ttl`` from its first look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rotator.core.record import Record
from rotator.durations import format_duration

if TYPE_CHECKING:
    from rotator.cli.context import Parts

#: Seconds: a stored ttl beyond this (a damaged record) is shown, but no time is computed from it.
_LONGEST_TTL = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class LeaseView:
    holder: str
    ttl_s: float
    #: When the holder last wrote the record (Vault's clock), if Vault said.
    written_at: str | None
    age_s: float | None
    #: The earliest time another process may take over (Vault's clock), if known.
    takeover_from: str | None

    @property
    def abandoned(self) -> bool:
        """Unchanged for longer than its ttl: its holder most likely stopped."""
        return self.age_s is not None and self.age_s >= self.ttl_s

    def sentence(self) -> str:
        held = f"lease held by {self.holder}"
        if self.age_s is None:
            return f"{held} (ttl {_ttl_text(self.ttl_s)})"
        age = format_duration(max(1, round(self.age_s)))
        if self.abandoned:
            return (
                f"{held}, unchanged for {age}, longer than its ttl ({_ttl_text(self.ttl_s)}): "
                "its holder has most likely stopped; the next pass of any process takes over "
                "once it has watched it that long"
            )
        return (
            f"{held}, last written {age} ago: another process may take over from "
            f"{self.takeover_from} (ttl {_ttl_text(self.ttl_s)}) if its holder writes nothing "
            "more"
        )


def _ttl_text(ttl: float) -> str:
    sane = math.isfinite(ttl) and 0 <= ttl <= _LONGEST_TTL
    return format_duration(ttl) if sane else f"{ttl!r} s, as stored"


def lease_view(
    record: Record | None, written_at: datetime | None, now: datetime
) -> LeaseView | None:
    """The record's lease, judged at ``now`` (all on Vault's clock); None when none is held."""
    lease = record.lease if record is not None else None
    if lease is None:
        return None
    ttl = lease.ttl
    sane = math.isfinite(ttl) and 0 <= ttl <= _LONGEST_TTL
    if written_at is None or not sane:
        return LeaseView(lease.holder, ttl, None, None, None)
    age = max(0.0, (now - written_at).total_seconds())
    takeover = written_at + timedelta(seconds=ttl)
    return LeaseView(lease.holder, ttl, written_at.isoformat(), round(age, 1), takeover.isoformat())


def read_lease(parts: Parts, name: str) -> LeaseView | None:
    """The lease in ``name``'s record as it is now, with the time its version was written."""
    entry = parts.vault.read(parts.store.key(name))
    record = Record.from_storage(entry.data) if entry.data is not None else None
    return lease_view(record, entry.created_time, parts.reconciler.clock())
