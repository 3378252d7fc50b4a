"""Intercom's identity-verification-secret API: the client, its models and its errors.

The client (and with it httpx) is imported on first use, not with the package: a reconcile pass
with nothing due never talks to Intercom and should not pay for loading an HTTP stack.
"""

from typing import TYPE_CHECKING, Any

from rotator.core.endpoints import resolve_base_url
from rotator.intercom.errors import (
    CreateOutcomeUnknown,
    IntercomAuthError,
    IntercomPermissionError,
    IntercomProtocolError,
    IntercomRateLimited,
    IntercomRequestError,
    IntercomUnavailable,
    IntercomValidationError,
)
from rotator.intercom.models import (
    READ_SCOPE,
    REGION_BASE_URLS,
    WRITE_SCOPE,
    CreatedSecret,
    DeleteOutcome,
    Platforms,
    SecretInfo,
)

if TYPE_CHECKING:
    from rotator.intercom.client import DEFAULT_TIMEOUT, IntercomClient, RetryPolicy

_FROM_CLIENT = frozenset({"DEFAULT_TIMEOUT", "IntercomClient", "RetryPolicy"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CLIENT:
        from rotator.intercom import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_TIMEOUT",
    "READ_SCOPE",
    "REGION_BASE_URLS",
    "WRITE_SCOPE",
    "CreateOutcomeUnknown",
    "CreatedSecret",
    "DeleteOutcome",
    "IntercomAuthError",
    "IntercomClient",
    "IntercomPermissionError",
    "IntercomProtocolError",
    "IntercomRateLimited",
    "IntercomRequestError",
    "IntercomUnavailable",
    "IntercomValidationError",
    "Platforms",
    "RetryPolicy",
    "SecretInfo",
    "resolve_base_url",
]
