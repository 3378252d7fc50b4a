"""The Vault (or OpenBao) adapter: KV v2 with check-and-set, login and renewal, retries.

``kv`` holds the adapter, ``auth`` its credentials (login, renewal), ``translate`` what hvac and
requests say turned into ``errors``, and ``clock`` Vault's time read from its answers. This
package is the only part of rotator that imports hvac or requests.
"""

from rotator.vault.errors import (
    CasConflict,
    VaultAuthError,
    VaultMountError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.vault.kv import Vault
from rotator.vault.translate import KVEntry

__all__ = [
    "CasConflict",
    "KVEntry",
    "Vault",
    "VaultAuthError",
    "VaultMountError",
    "VaultPermissionError",
    "VaultRequestError",
    "VaultUnavailable",
]
