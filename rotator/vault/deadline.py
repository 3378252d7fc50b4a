"""A time bound on the Vault work done while someone waits for it: a hook call, a readiness
check, the lease release of an interrupted command.

Without a bound a paused or partitioned Vault holds each operation for ``attempts`` times
``[vault] timeout`` plus backoff (41 s with the defaults), far past a caller's patience (a
Kubernetes probe gives up after 1-3 s). Inside ``within(seconds)`` the same code runs, but:

* every request this context sends waits at most the time left (not ``[vault] timeout``);
* a retry whose backoff would end past the bound is not attempted;
* a request that would start after the bound fails at once.

Each way out is a ``VaultUnavailable`` saying how long Vault had, with ``delay`` (seconds) as a
hint for when to ask again. The bound lives in a context variable: it follows the code that set
it, and no other thread (a reconcile pass beside a hook call) is affected. Bounds nest; the
nearest end wins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import tenacity

from rotator.vault.errors import VaultUnavailable

#: Seconds: a caller cut short is told to come back after this long.
RETRY_HINT = 5.0


@dataclass(frozen=True, slots=True)
class _Bound:
    ends: float  # time.monotonic()
    seconds: float


_bound: ContextVar[_Bound | None] = ContextVar("rotator_vault_deadline", default=None)


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Bound the Vault work done inside the block to ``seconds`` in all."""
    bound = _Bound(time.monotonic() + seconds, seconds)
    outer = _bound.get()
    if outer is not None and outer.ends < bound.ends:
        bound = outer
    token = _bound.set(bound)
    try:
        yield
    finally:
        _bound.reset(token)


def left() -> float | None:
    """Seconds left before the bound (None: no bound here)."""
    bound = _bound.get()
    return None if bound is None else bound.ends - time.monotonic()


def request_timeout(default: float) -> float:
    """The timeout for one request sent now: ``default`` or the time left, whichever is less;
    ``VaultUnavailable`` if no time is left."""
    remaining = left()
    if remaining is None:
        return default
    if remaining <= 0:
        raise expired()
    return min(default, remaining)


@contextmanager
def holding(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock`` for the block, waiting for it no longer than the time left: the thread
    holding it may be a reconcile pass waiting on Vault without any bound."""
    remaining = left()
    if not lock.acquire(timeout=-1 if remaining is None else max(0.0, remaining)):
        raise expired()
    try:
        yield
    finally:
        lock.release()


class _PastBound(tenacity.stop.stop_base):
    """No retry whose backoff would end past the bound."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        remaining = left()
        return remaining is not None and retry_state.upcoming_sleep >= remaining


#: A tenacity stop condition: ``stop_after_attempt(n) | deadline.stop``.
stop = _PastBound()


def gave_up(error: VaultUnavailable, attempts: int) -> None:
    """Say why retrying stopped: the bound (with a hint for when to ask again), or the attempts
    all failed."""
    bound = _bound.get()
    if bound is None:
        error.message += f" Gave up after {attempts} attempt(s)."
    elif error.operation != "deadline":
        error.message = f"{_within(bound)} ({error.message})"
        error.delay = error.delay or RETRY_HINT


def expired() -> VaultUnavailable:
    bound = _bound.get()
    return VaultUnavailable(
        _within(bound) if bound else "Vault did not answer in time.",
        delay=RETRY_HINT,
        operation="deadline",
    )


def _within(bound: _Bound) -> str:
    return f"Vault did not answer within the {bound.seconds:g} s this operation may take."
