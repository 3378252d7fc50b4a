"""Readiness answered at once, from a state a background thread keeps checking.

``/readyz`` must answer within a Kubernetes probe's timeout (1 s by default) whatever Vault
does. Asking Vault in the request made the probe wait for Vault: 41 s with Vault paused, and a
probe that times out tells nothing. So a thread asks Vault every ``interval`` seconds, each
check bounded by ``rotator.vault.deadline.within(timeout)``, and the probe reads the last answer.

A check that has not finished long after it should have (a lock held by a pass stuck in a
login, say) makes the state *stale*, and a stale state is "not ready": the probe never reports
a Vault it has not heard from lately as fine. Only a change of state is logged
(``readiness.changed``): a Vault that is down for an hour is not a line every two seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rotator.logs import get_logger
from rotator.vault import deadline

#: Seconds between two checks of Vault.
INTERVAL = 2.0
#: Seconds one check may take (a probe sees the result at most INTERVAL + TIMEOUT late).
TIMEOUT = 2.0
#: Seconds past INTERVAL + TIMEOUT after which the last result no longer counts.
STALE_AFTER = 3.0

log = get_logger()

Check = Callable[[], tuple[bool, str]]


class Readiness:
    """The last result of ``check`` (``Vault.healthy``), kept fresh by a background thread."""

    def __init__(
        self,
        check: Check,
        *,
        stopping: threading.Event,
        interval: float = INTERVAL,
        timeout: float = TIMEOUT,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._stopping = stopping
        self.interval = interval
        self.timeout = timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: tuple[bool, str] | None = None
        self._checked_at = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check now and then every ``interval`` seconds, until ``stopping`` is set."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="readiness", daemon=True)
            self._thread.start()

    def state(self) -> tuple[bool, str]:
        """``(ready, reason)`` from the last check; never waits for Vault."""
        with self._lock:
            last, checked_at = self._last, self._checked_at
        if last is None:
            return False, "Vault not checked yet"
        age = self._monotonic() - checked_at
        if age > self.interval + self.timeout + STALE_AFTER:
            return False, f"Vault's last check finished {age:.0f} s ago; the next one is stuck"
        return last

    def check_once(self) -> tuple[bool, str]:
        """Ask Vault once, within ``timeout`` seconds, and keep the answer."""
        try:
            with deadline.within(self.timeout):
                result = self._check()
        except Exception as e:  # noqa: BLE001 - the watcher must outlive any one failed check
            result = (False, f"unexpected {type(e).__name__} while checking Vault")
        with self._lock:
            before, self._last = self._last, result
            self._checked_at = self._monotonic()
        if before != result and not (before is None and result[0]):
            log.info("readiness.changed", ready=result[0], reason=result[1])
        return result

    def _watch(self) -> None:
        while not self._stopping.is_set():
            self.check_once()
            self._stopping.wait(self.interval)
