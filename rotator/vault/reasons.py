"""Why a request goes to Vault: the ``reason`` label of
``rotator_vault_requests_by_reason_total``, which shows what an idle daemon still asks Vault.

The daemon names the reason around each job (``because("sweep")``, ``because("due")``...); the
metrics' request hook asks ``reason_of`` for the request it counts. A context variable, so
each thread (and each pass's worker) carries its own. Token upkeep and the unauthenticated
health check are named by their operation, whoever triggered them: a renewal made before a
sweep's read is the token's, not the sweep's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

#: Operations that keep our token (``rotator.vault.auth``) and the health check.
_BY_OPERATION: Final = {"login": "token", "renew": "token", "lookup": "token", "health": "health"}

_reason: ContextVar[str] = ContextVar("rotator_vault_reason", default="other")


@contextmanager
def because(reason: str) -> Iterator[None]:
    """Requests made inside are counted under ``reason``."""
    token = _reason.set(reason)
    try:
        yield
    finally:
        _reason.reset(token)


def reason_of(operation: str) -> str:
    """The reason a request of ``operation`` is made now."""
    return _BY_OPERATION.get(operation) or _reason.get()
