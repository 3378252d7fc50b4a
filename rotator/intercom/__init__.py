"""Intercom's identity-verification-secret API: the client, its models and its errors."""

from rotator.intercom.client import DEFAULT_TIMEOUT, IntercomClient, RetryPolicy, resolve_base_url
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
