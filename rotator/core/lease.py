"""Judging another process's lease by our own clock.

A lease in the state record says "holder H is acting on this target" and carries a nonce that
changes with every write H makes. We never compare H's wall clock with ours: we note when *we*
first saw a given nonce (on our monotonic clock) and treat the lease as abandoned once that same
nonce has sat there for its whole ``ttl`` of our time. A holder that is alive keeps writing, so
its nonce keeps changing. Even a wrong judgement is safe: the check-and-set version, not the
lease, fences every write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rotator.core.record import Lease


class LeaseWatch:
    """Per-process memory of the leases we have seen, per target."""

    def __init__(self, me: str, monotonic: Callable[[], float]) -> None:
        self.me = me
        self._monotonic = monotonic
        self._seen: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def free(self, target: str, lease: Lease | None) -> bool:
        """Whether we may act on ``target`` now, given the lease its record carries."""
        with self._lock:
            if lease is None or lease.holder == self.me:
                self._seen.pop(target, None)
                return True
            now = self._monotonic()
            seen = self._seen.get(target)
            if seen is None or seen[0] != lease.nonce:
                self._seen[target] = (lease.nonce, now)
                return False
            return now - seen[1] >= _ttl(lease.ttl)


#: Seconds: the longest any process configures (``[daemon] lease_ttl``).
LONGEST_TTL = 3600.0


def _ttl(ttl: float) -> float:
    """A stored ttl, held to what a process may configure: a damaged record's ``inf`` or NaN
    (NaN compares false with everything) would otherwise keep the target held for ever."""
    return ttl if 0 <= ttl <= LONGEST_TTL else LONGEST_TTL
