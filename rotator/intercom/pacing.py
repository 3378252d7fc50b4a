"""Pacing Intercom calls under the app's rate limit: one token bucket per budget, shared.

Intercom limits each app (10,000 calls a minute by default for a private app), enforced as a
sixth of that in every 10-second window, and answers ``429`` beyond it. Retrying 429s would
keep a busy daemon at the limit and spend the app's allowance for everyone else on refusals,
so rotator paces instead: every attempt (retries included) first takes a token from its
*budget*, a bucket refilled at ``rate`` calls a minute and holding at most a second's worth.
Whatever the order of the threads, no 10-second window then sees more than ``rate / 6 +
burst`` calls: 1,466 at the default 8,000 a minute, against the 1,666 Intercom allows.

The server's word wins over our arithmetic: when an answer's ``X-RateLimit-Remaining`` says
the window is (nearly) spent, because another process or integration uses the same app, the
budget sends nothing until its ``X-RateLimit-Reset``; a 429 holds it for its ``Retry-After``.
Both waits are bounded (``ratelimit.server_delay``, at most ``LONGEST_HOLD``).

Waiting is a reservation: ``acquire`` takes a token even if the bucket is empty (its count
goes below zero) and sleeps until that token would have come, so callers are served in order
and at most ``rate`` a minute, however many threads ask. Clock and sleep are injected: tests
drive them, nothing here reads real time.

Budgets are keyed by the caller (``Budgets.get``): by token and base URL, or by base URL alone
(``[intercom] rate_limit_scope``); a token never appears in a key as itself, only a digest.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final

from rotator.intercom.ratelimit import server_delay

#: Seconds: the longest the server's headers may hold a whole budget (a window is 10 s; a
#: longer wait asked for by one 429 is that request's, handled by the client's retry policy).
LONGEST_HOLD: Final = 60.0
#: Calls left in the server's window below which the budget waits for the next window: the
#: requests already in flight from this process's threads may still spend them.
RESERVE: Final = 10

_DIGITS = re.compile(r"[0-9]{1,12}")


class Budget:
    """A thread-safe token bucket: at most ``per_minute`` calls a minute, ``burst`` at once."""

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        wall: Callable[[], float] = time.time,
        reserve: int = RESERVE,
    ) -> None:
        """``clock`` is monotonic (the bucket's), ``wall`` Unix time (to read
        ``X-RateLimit-Reset``); ``burst`` defaults to a second's worth of calls, at least 1."""
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.rate = per_minute / 60.0
        self.burst = max(1.0, burst if burst is not None else self.rate)
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._reserve = reserve
        self._lock = threading.Lock()
        self._tokens = self.burst
        #: From when the bucket refills: now, or the end of a hold the server asked for.
        self._since = clock()
        #: Seconds callers waited in all, and how many waited (for metrics and tests).
        self.waited = 0.0
        self.waits = 0

    def acquire(self) -> float:
        """Take one call's token, sleeping until it is there; the seconds slept."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0
            ready = max(self._since, now) + max(0.0, -self._tokens) / self.rate
            wait = ready - now
            if wait > 0:
                self.waited += wait
                self.waits += 1
        if wait > 0:
            self._sleep(wait)
        return max(0.0, wait)

    def note(self, status: int, headers: Mapping[str, str]) -> float:
        """Read an answer's rate-limit headers; the seconds the budget now holds (0: none).

        A 429 holds it for the server's ``Retry-After`` (else until ``X-RateLimit-Reset``); a
        success whose ``X-RateLimit-Remaining`` is at most the reserve holds it until the reset.
        Headers that do not parse strictly are ignored: pacing goes on by the rate alone."""
        if status != 429:
            remaining = (headers.get("X-RateLimit-Remaining") or "").strip()
            if not _DIGITS.fullmatch(remaining) or int(remaining) > self._reserve:
                return 0.0
            headers = {
                "X-RateLimit-Reset": headers.get("X-RateLimit-Reset") or "",
                "Date": headers.get("Date") or "",  # the server's clock, for the reset
            }
        delay = server_delay(headers, now=self._wall(), cap=LONGEST_HOLD)
        if not delay:
            return 0.0
        self.hold(delay)
        return delay

    def hold(self, seconds: float) -> None:
        """Send nothing for ``seconds``; then refill from empty, at the rate."""
        with self._lock:
            until = self._clock() + min(seconds, LONGEST_HOLD)
            if until > self._since:
                self._refill(self._clock())
                self._tokens = min(self._tokens, 0.0)
                self._since = until

    def _refill(self, now: float) -> None:
        if now > self._since:
            self._tokens = min(self.burst, self._tokens + (now - self._since) * self.rate)
            self._since = now


class Budgets:
    """Every budget of one process, made on first use; threads share them."""

    def __init__(
        self,
        per_minute: float,
        scope: str = "token",
        *,
        factory: Callable[[float], Budget] | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.scope = scope
        self._factory = factory or Budget
        self._lock = threading.Lock()
        self._budgets: dict[tuple[str, str], Budget] = {}

    def get(self, endpoint: str, token: str) -> Budget:
        """The budget of calls to ``endpoint`` with ``token`` (or of ``endpoint`` alone)."""
        who = "*" if self.scope == "endpoint" else _digest(token)
        key = (endpoint.rstrip("/"), who)
        with self._lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = self._factory(self.per_minute)
            return budget

    def __len__(self) -> int:
        with self._lock:
            return len(self._budgets)


def _digest(token: str) -> str:
    return hashlib.sha256(b"rotator-budget-v1\0" + token.encode()).hexdigest()[:16]
