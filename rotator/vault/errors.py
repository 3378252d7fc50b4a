"""What the Vault adapter raises: hvac's and requests' exceptions never leave it.

RotatorError
├── CasConflict               another writer was first: re-read, decide again (.path)
├── TemporaryError
│   └── VaultUnavailable      unreachable, timeout, 429, 5xx, sealed, after bounded retries
└── PermanentError
    ├── VaultAuthError        cannot log in, or the static token is dead
    ├── VaultPermissionError  403 even with a fresh token; names the path and capability
    └── VaultRequestError     any other refusal: no such mount, not KV v2, TLS, a bad answer
"""

from __future__ import annotations

from rotator.errors import PermanentError, RotatorError, TemporaryError


class VaultAuthError(PermanentError):
    """rotator cannot log in to Vault, or its static token is no longer valid."""


class VaultUnavailable(TemporaryError):
    """Vault could not serve: unreachable, timed out, rate limited, 5xx, sealed or standby."""


class VaultPermissionError(PermanentError):
    """Vault refused an operation on a path even with a fresh token."""


class VaultRequestError(PermanentError):
    """Vault refused a request for another reason, or answered what Vault would not."""


class CasConflict(RotatorError):
    """A check-and-set write lost: another writer changed ``path`` first. Re-read, decide again."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message, status=400, operation="write")
        self.path = path


class VaultMountError(VaultRequestError):
    """The configured mount does not exist, or is not a KV version 2 engine."""
