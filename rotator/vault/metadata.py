"""KV v2 metadata, mixed into ``rotator.vault.Vault``: check-and-set required on a key, the
keys under a folder, when a key was first written, and a key removed with every version.

The state records require check-and-set (``require_cas``, before their first write), the CLI
lists the targets' records, and the change log (``rotator.reconciler.changes``) tells a log
deleted and begun again by when it was first written (``begun``).
"""

from __future__ import annotations

import builtins
from datetime import datetime

import hvac.exceptions as hvac_errors

from rotator.vault.auth import json_object
from rotator.vault.translate import Mixed, no_route, relative, vault_time


class Metadata(Mixed):
    """Mixed into ``Vault`` (``Mixed``: its client, mount and ``_call``)."""

    def require_cas(self, path: str) -> None:
        """Make every write to ``path`` require check-and-set (idempotent)."""
        path = relative(path)
        self._call(
            "require_cas",
            path,
            lambda: self._client.secrets.kv.v2.update_metadata(
                path=path, cas_required=True, mount_point=self._mount
            ),
        )

    def list(self, path: str) -> builtins.list[str]:
        """The keys under ``path`` (sub-folders end with ``/``); [] when there are none."""
        path = path.strip("/")

        def keys() -> builtins.list[str]:
            try:
                answer = self._client.secrets.kv.v2.list_secrets(path=path, mount_point=self._mount)
            except hvac_errors.InvalidPath as e:
                if no_route(e):
                    raise
                return []
            return [str(key) for key in json_object(answer)["data"]["keys"]]

        return self._call("list", path, keys)

    def begun(self, path: str) -> datetime | None:
        """When ``path`` was first written (its metadata's ``created_time``: deleted with every
        version and written again, it is younger than the old versions); None if it is not."""
        path = relative(path)

        def ask() -> datetime | None:
            try:
                answer = self._client.secrets.kv.v2.read_secret_metadata(
                    path=path, mount_point=self._mount
                )
            except hvac_errors.InvalidPath as e:
                if no_route(e):
                    raise
                return None
            return vault_time(json_object(answer)["data"].get("created_time"))

        return self._call("read_metadata", path, ask)

    def delete_metadata(self, path: str) -> None:
        """Remove ``path`` with every version and its metadata."""
        path = relative(path)
        self._call(
            "delete_metadata",
            path,
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self._mount
            ),
        )
