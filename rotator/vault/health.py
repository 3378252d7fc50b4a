"""Vault's health, as ``/readyz`` and ``doctor`` ask it, and the token kept alive between a
quiet daemon's requests: mixed into ``rotator.vault.Vault``.

``/readyz`` is asked every few seconds (``rotator.daemon.readiness``). Asking Vault about our
token each time (``lookup-self``) was a line in the customer's Vault audit log every two
seconds; ``reachable`` asks only Vault's health endpoint, which is unauthenticated and which
Vault does not audit, and judges the token by what this process knows (its TTL, a refusal).
"""

from __future__ import annotations

from rotator.config import VaultSettings
from rotator.errors import RotatorError
from rotator.vault.auth import TokenKeeper, json_object
from rotator.vault.translate import Mixed


class Health(Mixed):
    """Mixed into ``Vault`` (``Mixed``), with its settings and token too."""

    settings: VaultSettings
    _token: TokenKeeper

    def healthy(self) -> tuple[bool, str]:
        """``(True, "ok")`` when Vault is reachable, unsealed and our token valid; never raises.
        Asks Vault about the token (``lookup-self``): an audited request, for ``doctor``."""
        return self._health(look_up=True)

    def reachable(self) -> tuple[bool, str]:
        """``healthy`` without an audited request, for ``/readyz`` every few seconds: Vault's
        health endpoint (unauthenticated, which Vault does not audit) and what this process
        knows of its token."""
        return self._health(look_up=False)

    def _health(self, *, look_up: bool) -> tuple[bool, str]:
        try:
            status = self._call(
                "health",
                "",
                lambda: json_object(
                    self._client.sys.read_health_status(method="GET", standby_ok=True)
                ),
                authenticated=False,
            )
            if not status.get("initialized", True):
                return False, f"Vault at {self.settings.address} is not initialized"
            if status.get("sealed"):
                return False, f"Vault at {self.settings.address} is sealed"
            if look_up:
                self._call("health", "", self._client.auth.token.lookup_self)
        except RotatorError as e:
            return False, str(e)
        except Exception as e:  # noqa: BLE001 - a readiness check reports failures, never raises
            return False, f"unexpected {type(e).__name__} while checking Vault"
        problem = None if look_up else self._token.state()
        return (False, problem) if problem else (True, "ok")

    def keep_token(self) -> None:
        """Log in, or renew the token once a third of its TTL is left (nothing otherwise):
        a quiet daemon makes no other request for long stretches, and a token renewed only
        before the next one could expire in between."""
        self._token.fresh()

    def capabilities(self, paths: list[str]) -> dict[str, list[str]]:
        """Our token's capabilities on each API path (``<mount>/data/<path>``, from the Vault
        root), asked of ``sys/capabilities-self``: write access checked without writing."""
        wanted = [p.strip("/") for p in paths]

        def ask() -> dict[str, list[str]]:
            answer = json_object(
                self._client.adapter.post("/v1/sys/capabilities-self", json={"paths": wanted})
            )
            inner = answer.get("data")
            data = inner if isinstance(inner, dict) else answer
            found = {}
            for path in wanted:
                caps = data.get(path, data.get("capabilities") if len(wanted) == 1 else None)
                if not isinstance(caps, list):
                    raise ValueError("no capabilities for a path asked about")
                found[path] = sorted(str(c) for c in caps)
            return found

        return self._call("capabilities", "", ask)
