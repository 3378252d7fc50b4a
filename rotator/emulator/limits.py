"""Intercom's rate limit, as the emulator enforces it: per app and per workspace, 10-s windows.

Intercom documents (developers.intercom.com, "Rate Limiting") a default of 10,000 API calls a
minute per app and 25,000 a minute per workspace across its apps, "evenly distributed" into
10-second windows: an app may make 1,666 calls in each window (a sixth of its minute). Every
authenticated answer carries ``X-RateLimit-Limit`` (the window's allowance),
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix seconds when the window ends); a call
beyond the allowance is answered ``429`` with the error code ``rate_limit_exceeded`` and
``X-RateLimit-Remaining: 0``. The headers here describe whichever of the two limits has less
left.

An app is a token's ``Token.app``: by default each token is its own app (a private app has one
token); tokens given the same app share its allowance (one public app installed in several
workspaces). Windows are aligned to multiples of 10 Unix seconds of the emulator's clock, which
tests inject. Refused calls count too: hammering does not earn a client anything.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds in one window.
WINDOW = 10


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Calls a minute an app and a workspace may make; ``enforce=False`` only informs."""

    per_app: int = 10_000
    per_workspace: int = 25_000
    enforce: bool = True

    def __post_init__(self) -> None:
        if self.per_app < 6 or self.per_workspace < 6:
            raise ValueError("a rate limit must allow at least one call per 10-second window")

    @property
    def app_window(self) -> int:
        """Calls an app may make in one window: 1,666 for 10,000 a minute."""
        return self.per_app * WINDOW // 60

    @property
    def workspace_window(self) -> int:
        return self.per_workspace * WINDOW // 60


@dataclass(frozen=True, slots=True)
class Verdict:
    """One call's count: refused or not, and the headers its answer carries."""

    refused: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(self.reset)),
        ]

    def message(self) -> str:
        return f"Exceeded rate limit of {self.limit} in {WINDOW}_seconds"


class RateWindows:
    """Counts every authenticated call per app and per workspace in the current window."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str], tuple[int, int]] = {}
        #: Calls refused so far, and the most calls one app made in one window (tests and the
        #: benchmark read them).
        self.refused = 0
        self.busiest = 0

    def count(self, app: str, workspace: str) -> Verdict:
        """Count one call of ``app`` in ``workspace`` and say whether it is over a limit."""
        now = int(self._clock())
        start = now - now % WINDOW
        limit = self.limit
        with self._lock:
            app_used = self._take(("app", app), start)
            ws_used = self._take(("workspace", workspace), start)
            app_left = limit.app_window - app_used
            ws_left = limit.workspace_window - ws_used
            refused = limit.enforce and min(app_left, ws_left) < 0
            self.busiest = max(self.busiest, app_used)
            if refused:
                self.refused += 1
        if app_left <= ws_left:
            allowance, left = limit.app_window, app_left
        else:
            allowance, left = limit.workspace_window, ws_left
        return Verdict(refused, allowance, max(0, left), start + WINDOW)

    def _take(self, key: tuple[str, str], start: int) -> int:
        began, used = self._used.get(key, (start, 0))
        used = used + 1 if began == start else 1
        self._used[key] = (start, used)
        return used
