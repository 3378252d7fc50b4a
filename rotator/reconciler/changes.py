"""A change log in Vault: how a quiet daemon notices, with one read, what other processes wrote.

A daemon reads a target's record only when its record says something can happen
(``rotator.core.wakeups``). What another process writes (``rotate-now``, ``pause``, ``abort``, a
confirmation taken by another replica, a CronJob's pass) is not in the record it last read:
re-reading every record to find out would cost one audited Vault read per target per sweep.
Instead every process that writes a record also writes one small KV v2 secret,
``<state_path>/_changes`` (target names start with a letter or digit: never this key), holding
the name of the target it wrote. KV v2 numbers its versions; each process remembers the
versions it wrote itself (``ChangeLog.note``). A sweep reads the latest version (one request):
versions since the last sweep that this process did not write are other processes' changes,
and each names its target (one more read per such version, the latest one comes with the first
read). When more changed than ``LOOKBACK`` versions, or the versions are gone (KV keeps
``max_versions``, ten by default), or the key was deleted (the log begun again: the version
read last no longer bears the time it was written at, or, gone, the log's metadata was
created after it), or at a process's first read (it
knows nothing before it): ``changes`` answers ``None``, and the daemon reads every record.

Not every record write is told: a pass's own steps while it holds its lease are not news, only
taking the lease, letting it go, and writes without a lease (an operator's request, a
confirmation). A change log that fails to write is logged, never fails the write it follows:
the daemon's periodic full read (``rotator.daemon.watch``) catches up with it, as with a hand
edit of a record. The log's writes use check-and-set on the version this process last knew,
re-read on a conflict, so the versions it remembers are exactly its own.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Protocol

from rotator.config import TargetSettings
from rotator.core.record import Record
from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.reconciler.ports import KV
from rotator.vault import CasConflict, KVEntry

log = get_logger()

#: The key under ``state_path``; no target can be called this (names start with [a-z0-9]).
KEY = "_changes"
#: Versions of the log a sweep reads one by one before it reads every record instead.
LOOKBACK = 8
#: Conflicting writers before a note gives up (the daemon's full read catches up).
_ATTEMPTS = 4


class LogKV(KV, Protocol):
    """KV, and when a path was first written: a log deleted and begun again is younger than
    the version a sweep read last, whether or not that version is still kept."""

    def begun(self, path: str) -> datetime | None: ...


def announces(before: Record | None, after: Record) -> bool:
    """Whether this write is news to other processes: anything but a step of a pass that
    holds the lease before and after it."""
    held = before.lease.holder if before is not None and before.lease is not None else None
    return held is None or after.lease is None or after.lease.holder != held


class ChangeLog:
    """This process's notes to ``<state_path>/_changes`` (a ``RecordListener``), and what a
    sweep learns from the others' (``changes``)."""

    def __init__(self, kv: LogKV, state_path: str, *, by: str = "rotator") -> None:
        self.kv = kv
        self.key = f"{state_path}/{KEY}"
        self.by = by
        self._lock = threading.Lock()
        #: The latest version this process knows of (0: none yet), and the ones it wrote.
        self._version = 0
        self._mine: set[int] = set()
        #: The version the last sweep read up to, and when it was written; None before the
        #: first sweep.
        self._seen: tuple[int, datetime | None] | None = None

    # --- writing -----------------------------------------------------------------------------

    def on_record(
        self, before: Record | None, after: Record, reason: str, target: TargetSettings
    ) -> None:
        del reason
        if announces(before, after):
            self.note(target.name)

    def on_seen(self, record: Record | None, target: TargetSettings, error: str | None) -> None:
        """Reads are nobody's news."""

    def note(self, name: str) -> None:
        """Write a version naming ``name``; a failure is logged, never raised."""
        data = {"target": name, "by": self.by}
        with self._lock:
            try:
                if self._version == 0:
                    # Not known yet (this process's first note): a read costs one request,
                    # a write bound to fail first costs two.
                    self._version = self.kv.read(self.key).version
                for _ in range(_ATTEMPTS):
                    try:
                        version = self.kv.write(self.key, data, cas=self._version)
                    except CasConflict:
                        self._version = self.kv.read(self.key).version
                        continue
                    self._version = version
                    self._mine.add(version)
                    return
                log.warning("changes.note_skipped", target=name, detail="the log kept moving")
            except RotatorError as e:
                log.warning("changes.note_failed", target=name, error=str(e))

    # --- reading -----------------------------------------------------------------------------

    def changes(self) -> set[str] | None:
        """Targets other processes wrote since the last call; ``None``: too many, or unknown,
        to say which: read every record. The first call only takes the log's version as it is
        and answers ``None``: nothing before it is known (at start the daemon reads every
        record anyway; after a start whose read of the log failed, it must). Raises Vault's
        errors, and then the next call starts again from the same version: a sweep that fails
        half-way loses nothing."""
        entry = self.kv.read(self.key)
        with self._lock:
            seen = self._seen
            self._version = max(self._version, entry.version)
            theirs = None if seen is None else self._theirs(seen[0], entry.version)
        names: set[str] | None = None
        if theirs is not None and seen is not None and self._same_log(seen, entry):
            names = self._names(entry, theirs)
        # Only once every version it needed was read: the next sweep starts after this one.
        with self._lock:
            self._seen = (entry.version, entry.created_time)
            self._mine = {v for v in self._mine if v > entry.version}
        return names

    def _same_log(self, seen: tuple[int, datetime | None], latest: KVEntry) -> bool:
        """Whether the log is the one the last sweep read, not deleted and begun again since
        (its versions numbered from 1 again, maybe up to the one read then): the version read
        then still bears the time it was written at, and the log was first written no later.
        One more read, only when it moved on."""
        version, written = seen
        if latest.version < version:
            return False
        if version == 0:
            return True  # there was no log: every version is new
        if latest.version == version:
            return latest.created_time == written
        # Not the version read then: KV may no longer keep it (``max_versions``), in the old log
        # and in one begun again alike, and then the new log's first versions are gone too.
        # When the log itself was first written tells them apart.
        begun = self.kv.begun(self.key)
        return written is not None and begun is not None and begun <= written

    def _names(self, latest: KVEntry, versions: list[int]) -> set[str] | None:
        """The targets ``versions`` name (``latest``'s own data for the latest); None when one
        no longer names any (KV no longer keeps it, or it is not ours)."""
        names: set[str] = set()
        for version in versions:
            entry = latest if version == latest.version else self.kv.read(self.key, version)
            data = entry.data
            name = (data or {}).get("target")
            if not isinstance(name, str):
                return None
            names.add(name)
        return names

    def _theirs(self, since: int, latest: int) -> list[int] | None:
        """The versions in ``(since, latest]`` others wrote; None: more than ``LOOKBACK``."""
        if latest - since > LOOKBACK + len(self._mine):
            return None
        theirs = [v for v in range(since + 1, latest + 1) if v not in self._mine]
        return theirs if len(theirs) <= LOOKBACK else None
