"""The Vault (or OpenBao) adapter: KV v2 with check-and-set, login and renewal, retries.

``kv`` holds the adapter (the only user of hvac and requests, with ``auth``, its credential
half); ``errors`` the exceptions it raises instead of theirs.
"""

from rotator.vault.errors import (
    CasConflict,
    VaultAuthError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.vault.kv import KVEntry, Vault

__all__ = [
    "CasConflict",
    "KVEntry",
    "Vault",
    "VaultAuthError",
    "VaultPermissionError",
    "VaultRequestError",
    "VaultUnavailable",
]
