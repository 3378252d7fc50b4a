"""Targets at one base URL share one connection pool, never each other's token or version."""

from __future__ import annotations

from typing import Any

from rotator.config import parse_settings
from rotator.emulator import Emulator, Token
from rotator.reconciler import client_factory_with
from rotator.redaction import SecretValue


def _targets(url: str) -> Any:
    return parse_settings(
        {
            "vault": {"address": "http://127.0.0.1:1", "state_path": "s/state"},
            "targets": [
                {
                    "name": name,
                    "base_url": url,
                    "token_env": f"TOK_{name.upper()}",
                    "secret_name": name,
                    "vault_path": f"s/{name}",
                    "intercom_version": version,
                }
                for name, version in (("alpha", "2.11"), ("beta", "Preview"))
            ],
        }
    ).targets


def test_clients_share_a_session_but_send_their_own_token_and_version() -> None:
    """Two targets' clients use one pool, yet each lists only its own workspace (its token
    went with its requests) and each request carries its own Intercom-Version."""
    versions: list[str | None] = []

    def record(app: Any) -> Any:
        def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
            versions.append(environ.get("HTTP_INTERCOM_VERSION"))
            return app(environ, start_response)

        return wrapped

    emulator = Emulator(tokens=[Token.parse("ta:read:wa"), Token.parse("tb:read:wb")])
    emulator.store.create("wa", "only in a", web=True, ios=False, android=False)
    emulator.store.create("wb", "only in b", web=True, ios=False, android=False)
    make = client_factory_with(lambda _s: None)
    with emulator.serve(middleware=record) as running:
        alpha, beta = _targets(running.url)
        a = make(alpha, SecretValue("ta"))
        b = make(beta, SecretValue("tb"))
        assert [s.name for s in a.list_secrets()] == ["only in a"]
        assert [s.name for s in b.list_secrets()] == ["only in b"]
        assert [s.name for s in a.list_secrets()] == ["only in a"]
        assert versions == ["2.11", "Preview", "2.11"]
        pool = a._connection()
        assert pool is b._connection()  # one pool for the base URL
        a.close()  # a client's close leaves the shared pool to the others
        assert [s.name for s in b.list_secrets()] == ["only in b"]
        make.close()  # type: ignore[attr-defined]  # the factory owns the pools
        assert pool.is_closed
        again = make(alpha, SecretValue("ta"))  # a closed pool is opened anew
        assert [s.name for s in again.list_secrets()] == ["only in a"]
        make.close()  # type: ignore[attr-defined]
