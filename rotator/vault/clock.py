"""Vault's time: the one clock every rotator process shares (PRODUCT.md rule 1).

Grace deadlines, backoffs and schedules are judged on it, never on a process's own wall clock:
a CronJob pod two days fast, or a laptop two days slow, reads the same time as every other
process, so it can neither cut a grace period short nor stretch one.

Theory of operation
-------------------
Each answer from Vault tells a moment on Vault's clock: its HTTP ``Date`` header (whole
seconds), and, for KV v2, the ``created_time`` of the version written or read (nanoseconds).
Both were taken *before* the answer reached us, so ``moment - our_monotonic_at_receipt`` is a
lower bound of the offset between Vault's clock and our monotonic clock. ``now()`` adds the
largest lower bound among the answers of the last few seconds (``RECENT``) to our monotonic
clock: it is never ahead of Vault's time, and runs at most a network round trip (plus a second,
with headers alone) behind. Being behind only makes deadlines later, never earlier. Our
monotonic clock measures elapsed time correctly whatever the wall clock says. Only the most
recent answers count: if Vault's clock is stepped back (NTP), the next pass's answers, taken
right before it decides, carry the new time, and older ones are forgotten.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from rotator.errors import TemporaryError

#: Beyond this, the daemon says so: the wall clock is wrong (decisions are unaffected).
SKEW_WORTH_A_WARNING = 30.0
#: Seconds: the answers counted are those received this close to the latest one.
RECENT = 5.0


class ClockUnknown(TemporaryError):
    """No answer from Vault has told its time yet."""


class SharedClock:
    """Vault's time, estimated from its answers (a lower bound: see the module docstring)."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, keep: int = 64) -> None:
        self._monotonic = monotonic
        self._seen: deque[tuple[float, float]] = deque(maxlen=keep)  # (received, offset)
        self._best: float | None = None
        self._lock = threading.Lock()

    def observe(self, moment: datetime, received: float | None = None) -> None:
        """Vault's clock read ``moment`` before an answer that arrived at ``received`` (our
        monotonic seconds; default: now)."""
        at = self._monotonic() if received is None else received
        with self._lock:
            self._seen.append((at, moment.timestamp() - at))
            latest = max(received for received, _ in self._seen)
            self._best = max(
                offset for received, offset in self._seen if received >= latest - RECENT
            )

    def now(self) -> datetime:
        """Vault's time now (never ahead of it). Raises ``ClockUnknown`` before any answer."""
        with self._lock:
            best = self._best
        if best is None:
            raise ClockUnknown(
                "Vault's time is not known yet: none of its answers carried a Date header or a "
                "version's created_time (is a proxy stripping them?)"
            )
        return datetime.fromtimestamp(self._monotonic() + best, UTC)

    def known(self) -> bool:
        return self._best is not None

    def skew(self, wall: datetime) -> float | None:
        """Seconds our wall clock runs ahead of Vault's (negative: behind); None if unknown."""
        if self._best is None:
            return None
        return (wall - self.now()).total_seconds()
