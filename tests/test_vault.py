"""The Vault adapter against a real OpenBao dev server: KV v2 with check-and-set, the three auth
methods, token renewal and re-login, retries, unknown write outcomes, and the promise that no
hvac or requests exception and no secret ever leaves ``rotator.vault``.

Faults are injected around the real server, never by mocking hvac: a requests transport adapter
that forwards to OpenBao and then drops the answer (or never sends), and small sockets that
answer like a broken proxy. Time is a fake monotonic clock; retries sleep into a list.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import secrets
import socketserver
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import hvac
import hvac.exceptions
import pytest
import requests
import requests.adapters
import structlog
from _openbao import OpenBao, free_port
from structlog.testing import capture_logs

from rotator.config import VaultAuthSettings, VaultSettings
from rotator.errors import PermanentError, RotatorError, TemporaryError
from rotator.logs import configure_logging
from rotator.redaction import SecretValue
from rotator.vault import (
    CasConflict,
    KVEntry,
    Vault,
    VaultAuthError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.vault.auth import TokenLease

ALL_CAPS = '"create", "read", "update", "delete", "list"'
# OpenBao insists on a CA for the Kubernetes API even when it is reached over plain HTTP, as our
# TokenReview stand-in is: a self-signed certificate (its key was thrown away) that is never used.
UNUSED_CA_CERT = """\
-----BEGIN CERTIFICATE-----
MIIBoTCCAUegAwIBAgIUTItZsnhWJ9QKOfNyrbfQxUfpDwcwCgYIKoZIzj0EAwIw
JTEjMCEGA1UEAwwacm90YXRvci10ZXN0LWt1YmVybmV0ZXMtY2EwIBcNMjYxMTI0
MjMxODUzWhgPMjEyNjEwMzEyMzE4NTNaMCUxIzAhBgNVBAMMGnJvdGF0b3ItdGVz
dC1rdWJlcm5ldGVzLWNhMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMV87S1C/
6gotZxrd8B40qQmSUsm3j0efX1dEIYs3SlBCRbZ7mmOlbGSXNtO2E1epxnaRiqXw
jPMP9LTfDFCRkaNTMFEwHQYDVR0OBBYEFFjvABpvBxKP1UfnbigivPpMb0nQMB8G
A1UdIwQYMBaAFFjvABpvBxKP1UfnbigivPpMb0nQMA8GA1UdEwEB/wQFMAMBAf8w
CgYIKoZIzj0EAwIDSAAwRQIhAMPL+1nt8y3wuYNsCE+KjlZJ5uDI2nxdb9xSzy2x
4f24AiBHdT978CPMxaJJtamuIwIp/UfQZ5mUEw+49Y2oPzitMg==
-----END CERTIFICATE-----
"""


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_vault(vault_settings, vault_env, sleeps, clock) -> Iterator[Callable[..., Vault]]:
    """Vaults on the dev server (root token unless told otherwise), closed after the test."""
    made: list[Vault] = []

    def make(settings: VaultSettings | None = None, environ: dict[str, str] | None = None, **kw):
        kw.setdefault("sleep", sleeps.append)
        kw.setdefault("monotonic", clock)
        vault = Vault(
            settings or vault_settings, environ=vault_env if environ is None else environ, **kw
        )
        made.append(vault)
        return vault

    yield make
    for vault in made:
        vault.close()


@pytest.fixture
def path(vault_settings) -> str:
    return f"{vault_settings.state_path}/web"


def settings_for(base: VaultSettings, **changes: Any) -> VaultSettings:
    """``base`` with some fields changed, validated again."""
    return VaultSettings.model_validate({**base.model_dump(), **changes})


def token_settings(base: VaultSettings, **auth: Any) -> VaultSettings:
    return settings_for(base, auth=VaultAuthSettings(method="token", **auth))


@pytest.fixture
def approle(openbao: OpenBao, vault_settings, tmp_path) -> Callable[..., dict[str, Any]]:
    """Sets up AppRole on a fresh mount with a policy on this test's paths; returns the pieces."""

    def setup(capabilities: str = ALL_CAPS, **token: Any) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:8]
        mount, policy = f"approle-{tag}", f"rotator-{tag}"
        openbao.kv_policy(policy, vault_settings.state_path, capabilities)
        role_id = openbao.create_approle(mount, "rotator", [policy], **token)
        secret_id = openbao.new_secret_id(mount, "rotator")
        secret_file = tmp_path / f"secret-id-{tag}"
        secret_file.write_text(secret_id + "\n")
        settings = settings_for(
            vault_settings,
            auth=VaultAuthSettings(
                method="approle",
                role_id=role_id,
                secret_id_file=str(secret_file),
                mount_point=mount,
            ),
        )
        return {
            "mount": mount,
            "role_id": role_id,
            "secret_id": secret_id,
            "file": secret_file,
            "settings": settings,
        }

    return setup


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- KV v2 -----------------------------------------------------------------------------------


def test_missing_path_reads_as_no_data_at_version_0(make_vault, path):
    """A path never written reads as data None, version 0: the cas for its first write."""
    assert make_vault().read(path) == KVEntry(None, 0)


def test_write_with_cas_0_then_cas_1(make_vault, path):
    """cas=0 creates, cas=<version read> updates, each returning the new version."""
    vault = make_vault()
    assert vault.write(path, {"phase": "idle", "generation": 1}, cas=0) == 1
    assert vault.read(path) == KVEntry({"phase": "idle", "generation": 1}, 1)
    assert vault.write(path, {"phase": "creating", "generation": 2}, cas=1) == 2
    assert vault.read(path) == KVEntry({"phase": "creating", "generation": 2}, 2)


def test_stale_cas_is_a_conflict_and_changes_nothing(make_vault, path):
    """A write with a cas that is no longer the latest version raises CasConflict, writes
    nothing, and the error names the path."""
    vault = make_vault()
    vault.write(path, {"owner": "a"}, cas=0)
    vault.write(path, {"owner": "b"}, cas=1)
    with pytest.raises(CasConflict) as caught:
        vault.write(path, {"owner": "c"}, cas=1)
    assert caught.value.path == path
    assert path in str(caught.value)
    assert vault.read(path) == KVEntry({"owner": "b"}, 2)
    with pytest.raises(CasConflict):
        vault.write(path, {"owner": "c"}, cas=0)


def test_require_cas_sets_cas_required_and_refuses_writes_without_cas(make_vault, openbao, path):
    """require_cas sets cas_required in the key's metadata (idempotently), after which Vault
    refuses any write that does not give cas."""
    vault = make_vault()
    vault.write(path, {"a": 1}, cas=0)
    vault.require_cas(path)
    vault.require_cas(path)
    assert openbao.read_metadata(path)["cas_required"] is True
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        openbao.admin().secrets.kv.v2.create_or_update_secret(
            path=path, secret={"a": 2}, mount_point="secret"
        )
    assert vault.write(path, {"a": 2}, cas=1) == 2


def test_deleted_or_destroyed_latest_version_reads_as_no_data_with_its_version(
    make_vault, openbao, path
):
    """A soft-deleted latest version reads as data None with that version (the next cas), and
    so does a destroyed one; the next write with that cas succeeds."""
    vault = make_vault()
    vault.write(path, {"v": 1}, cas=0)
    vault.write(path, {"v": 2}, cas=1)
    kv = openbao.admin().secrets.kv.v2
    kv.delete_latest_version_of_secret(path=path, mount_point="secret")
    assert vault.read(path) == KVEntry(None, 2)
    assert vault.write(path, {"v": 3}, cas=2) == 3
    kv.destroy_secret_versions(path=path, versions=[3], mount_point="secret")
    assert vault.read(path) == KVEntry(None, 3)


def test_list_and_delete_metadata(make_vault, vault_settings):
    """list returns the keys under a folder ([] for none); delete_metadata removes every version."""
    vault = make_vault()
    prefix = vault_settings.state_path
    assert vault.list(prefix) == []
    vault.write(f"{prefix}/web", {"a": 1}, cas=0)
    vault.write(f"{prefix}/ios/x", {"a": 1}, cas=0)
    assert sorted(vault.list(prefix)) == ["ios/", "web"]
    vault.delete_metadata(f"{prefix}/web")
    assert vault.read(f"{prefix}/web") == KVEntry(None, 0)
    assert vault.list(prefix) == ["ios/"]


def test_read_value_returns_a_secret_value(make_vault, path):
    """read_value returns one key as a SecretValue that does not show itself."""
    vault = make_vault()
    token = "dG9rOmludGVyY29tLXRva2VuLWZvci10ZXN0cw"
    vault.write(path, {"token": token, "note": "x"}, cas=0)
    value = vault.read_value(path, "token")
    assert isinstance(value, SecretValue)
    assert value.reveal() == token
    assert token not in repr(value)


def test_read_value_errors_clearly_on_a_missing_key_or_path(make_vault, path):
    """A missing key names the path, the key and the keys present; a missing path says so."""
    vault = make_vault()
    with pytest.raises(VaultRequestError, match="Nothing is stored at secret/"):
        vault.read_value(path, "token")
    vault.write(path, {"other": "value", "empty": ""}, cas=0)
    with pytest.raises(VaultRequestError) as caught:
        vault.read_value(path, "token")
    assert f"secret/{path}" in str(caught.value)
    assert "'token'" in str(caught.value)
    assert "empty, other" in str(caught.value)
    with pytest.raises(VaultRequestError, match="no non-empty string"):
        vault.read_value(path, "empty")


def test_a_missing_mount_or_a_kv_v1_mount_is_a_clear_request_error(
    make_vault, openbao, vault_settings, path
):
    """A mount that does not exist, or one that is not KV v2, gives a VaultRequestError naming
    the mount, without retries."""
    with pytest.raises(VaultRequestError, match="Nothing is mounted at nowhere/"):
        make_vault(settings_for(vault_settings, mount="nowhere")).read(path)
    kv1 = f"kv1-{uuid.uuid4().hex[:8]}"
    openbao.admin().sys.enable_secrets_engine("kv", path=kv1, options={"version": "1"})
    vault = make_vault(settings_for(vault_settings, mount=kv1))
    with pytest.raises(VaultRequestError, match="KV version 1, not KV v2"):
        vault.read(path)


# --- token auth: lifetime, renewal, revocation ---------------------------------------------


def test_a_root_token_is_never_renewed(make_vault, clock, path):
    """A token with TTL 0 (root, dev) never expires: a year later nothing is renewed."""
    vault = make_vault()
    with capture_logs() as logs:
        vault.read(path)
        clock.advance(365 * 86400)
        vault.read(path)
    assert len(events(logs, "vault.login")) == 1
    assert not events(logs, "vault.renewed")


def test_a_short_token_is_renewed_when_a_third_of_its_ttl_remains(
    make_vault, openbao, vault_settings, clock, path
):
    """A renewable 60s token is renewed once less than a third remains by our monotonic clock,
    and not before; Vault records the renewal."""
    policy = "rw-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    token = openbao.create_token([policy], ttl="60s", explicit_max_ttl="1h", renewable=True)
    vault = make_vault(environ={"VAULT_TOKEN": token})
    with capture_logs() as logs:
        vault.read(path)
        clock.advance(39)  # 21s of 60 left: more than a third
        vault.read(path)
        assert not events(logs, "vault.renewed")
        assert "last_renewal_time" not in openbao.lookup_token(token)
        clock.advance(2)  # 19s left
        vault.read(path)
        clock.advance(10)  # the renewal restarted the clock: 50s left
        vault.read(path)
    assert len(events(logs, "vault.renewed")) == 1
    assert events(logs, "vault.renewed")[0]["ttl_s"] == 60
    assert "last_renewal_time" in openbao.lookup_token(token)


def test_renewal_is_postponed_while_vault_cannot_renew_and_the_token_still_lives(
    make_vault, openbao, vault_settings, clock, path
):
    """If renew-self fails transiently while the token still has time, the operation goes on
    with the current token and renewal is tried again before the next one."""
    policy = "rw-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    token = openbao.create_token([policy], ttl="60s", explicit_max_ttl="1h", renewable=True)
    vault = make_vault(environ={"VAULT_TOKEN": token})
    vault.read(path)

    def is_renewal(request: requests.PreparedRequest) -> bool:
        return str(request.path_url).endswith("/renew-self")

    inject(vault, FaultyTransport(is_renewal, 503, times=4))
    clock.advance(45)
    with capture_logs() as logs:
        assert vault.read(path) == KVEntry(None, 0)
        assert not events(logs, "vault.renewed")
        assert len(events(logs, "vault.renew_postponed")) == 1
        vault.read(path)
    assert len(events(logs, "vault.renewed")) == 1


def test_token_lease_arithmetic():
    """A lease is due with less than a third left, expired at its end, never for TTL 0; a
    renewal that grants less than a third (max TTL near) does not count as one."""
    lease = TokenLease(60, renewable=True, started=100)
    assert not lease.due(139)
    assert lease.due(141)
    assert not lease.expired(159)
    assert lease.expired(160)
    assert lease.renewed({"lease_duration": 10, "renewable": True}, 140) is None
    assert lease.renewed({"lease_duration": 60, "renewable": True}, 140) == TokenLease(
        60, True, 140
    )
    forever = TokenLease(0, renewable=False, started=0)
    assert not forever.due(1e12)
    assert not forever.expired(1e12)
    looked_up = TokenLease.from_lookup({"ttl": 29, "creation_ttl": 90, "renewable": True}, 1000)
    assert looked_up.remaining(1000) == 29
    assert looked_up.due(1000)


def test_a_static_token_that_cannot_be_renewed_is_used_until_it_expires(
    make_vault, openbao, vault_settings, clock, path
):
    """A non-renewable static token keeps working past two thirds of its TTL (one warning),
    and raises VaultAuthError once our clock says it has expired."""
    token = openbao.create_token(["default"], ttl="60s", renewable=False)
    vault = make_vault(environ={"VAULT_TOKEN": token})
    vault.healthy()
    with capture_logs() as logs:
        clock.advance(45)
        assert vault.healthy() == (True, "ok")
        assert vault.healthy() == (True, "ok")
        clock.advance(20)
        ok, reason = vault.healthy()
        with pytest.raises(VaultAuthError, match="expired or was revoked"):
            vault.read(path)
    assert len(events(logs, "vault.token_expiring")) == 1
    assert not ok
    assert "expired" in reason


def test_a_revoked_static_token_is_an_auth_error_everywhere(
    make_vault, openbao, vault_settings, path
):
    """Once the static token is revoked, every operation raises VaultAuthError (not a
    permission error), and healthy() says why."""
    policy = "rw-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    token = openbao.create_token([policy], ttl="1h")
    vault = make_vault(environ={"VAULT_TOKEN": token})
    vault.write(path, {"a": 1}, cas=0)
    openbao.revoke_token(token)
    for call in every_operation(path):
        with pytest.raises(VaultAuthError):
            call(vault)
    ok, reason = vault.healthy()
    assert not ok
    assert "revoked or expired" in reason


def test_a_token_without_write_access_gets_a_permission_error_naming_the_path(
    make_vault, openbao, vault_settings, path
):
    """A valid token whose policy only reads gets VaultPermissionError on write, naming the
    path and the capability to grant; reads still work."""
    policy = "ro-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, '"read", "list"')
    token = openbao.create_token([policy], ttl="1h")
    vault = make_vault(environ={"VAULT_TOKEN": token})
    assert vault.read(path) == KVEntry(None, 0)
    with pytest.raises(VaultPermissionError) as caught:
        vault.write(path, {"a": 1}, cas=0)
    message = str(caught.value)
    assert f"write of secret/{path}" in message
    assert f"create and update on secret/data/{path}" in message
    assert caught.value.status == 403


def test_the_token_is_read_from_a_file(make_vault, openbao, vault_settings, tmp_path, path):
    """token_file is an alternative to the environment variable."""
    token_file = tmp_path / "token"
    token_file.write_text(openbao.root_token + "\n")
    vault = make_vault(token_settings(vault_settings, token_file=str(token_file)), environ={})
    assert vault.write(path, {"a": 1}, cas=0) == 1


def test_a_token_file_replaced_after_a_revocation_is_read_again(
    make_vault, openbao, vault_settings, tmp_path, path
):
    """Vault Agent writes a new token to token_file and revokes the old one: the next call
    is refused, and rotator reads the file again and goes on, without a restart."""
    policy = "rw-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    first = openbao.create_token([policy], ttl="1h")
    token_file = tmp_path / "token"
    token_file.write_text(first + "\n")
    vault = make_vault(token_settings(vault_settings, token_file=str(token_file)), environ={})
    assert vault.write(path, {"a": 1}, cas=0) == 1
    second = openbao.create_token([policy], ttl="1h")
    token_file.write_text(second + "\n")
    openbao.revoke_token(first)
    with capture_logs() as logs:
        assert vault.write(path, {"a": 2}, cas=1) == 2
    assert len(events(logs, "vault.relogin")) == 1


def test_a_token_file_whose_token_expires_is_read_again_before_it_does(
    make_vault, openbao, vault_settings, tmp_path, clock, path
):
    """A non-renewable token from token_file is replaced by what the file holds once less
    than a third of its TTL is left, rather than used until it dies."""
    policy = "rw-" + uuid.uuid4().hex[:8]
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    first = openbao.create_token([policy], ttl="60s", renewable=False)
    token_file = tmp_path / "token"
    token_file.write_text(first + "\n")
    vault = make_vault(token_settings(vault_settings, token_file=str(token_file)), environ={})
    vault.read(path)
    token_file.write_text(openbao.create_token([policy], ttl="1h") + "\n")
    clock.advance(45)
    with capture_logs() as logs:
        vault.read(path)
    assert len(events(logs, "vault.relogin")) == 1
    assert not events(logs, "vault.token_expiring")


def test_missing_credentials_are_an_auth_error_naming_where_they_were_expected(
    make_vault, vault_settings, tmp_path, path
):
    """An unset variable or an unreadable file is a VaultAuthError naming the variable or file,
    raised before anything is sent."""
    with pytest.raises(VaultAuthError, match="environment variable VAULT_TOKEN"):
        make_vault(environ={}).read(path)
    missing = tmp_path / "nope"
    vault = make_vault(token_settings(vault_settings, token_file=str(missing)))
    with pytest.raises(VaultAuthError, match=f"cannot read the Vault token from {missing}"):
        vault.login()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    vault = make_vault(token_settings(vault_settings, token_file=str(empty)))
    with pytest.raises(VaultAuthError, match=f"the Vault token file {empty} is empty"):
        vault.login()


# --- AppRole ---------------------------------------------------------------------------------


def test_approle_login_with_secret_id_from_a_file(
    make_vault, approle, vault_settings, tmp_path, path
):
    """AppRole with the role id and secret id in files logs in and can read and write the
    granted paths."""
    role = approle()
    role_id_file = tmp_path / "role-id"
    role_id_file.write_text(role["role_id"])
    auth = role["settings"].auth.model_dump() | {"role_id": None, "role_id_file": str(role_id_file)}
    vault = make_vault(settings_for(vault_settings, auth=auth), environ={})
    with capture_logs() as logs:
        assert vault.write(path, {"a": 1}, cas=0) == 1
    assert vault.read(path) == KVEntry({"a": 1}, 1)
    assert events(logs, "vault.login")[0]["method"] == "approle"


def test_approle_login_with_secret_id_from_the_environment(
    make_vault, approle, vault_settings, path
):
    """AppRole with role_id and secret_id from environment variables logs in."""
    role = approle()
    settings = settings_for(
        vault_settings,
        auth=VaultAuthSettings(
            method="approle",
            role_id_env="ROLE_ID",
            secret_id_env="SECRET_ID",
            mount_point=role["mount"],
        ),
    )
    vault = make_vault(
        settings, environ={"ROLE_ID": role["role_id"], "SECRET_ID": role["secret_id"]}
    )
    assert vault.write(path, {"a": 1}, cas=0) == 1


def test_the_secret_id_file_is_read_again_at_each_login(make_vault, approle, openbao, path):
    """After the secret id file is replaced (and the old one destroyed), the next login uses
    the new one: explicitly, and transparently after the token is revoked."""
    role = approle()
    vault = make_vault(role["settings"], environ={})
    vault.write(path, {"a": 1}, cas=0)
    admin = openbao.admin().auth.approle
    for _ in range(2):
        fresh = openbao.new_secret_id(role["mount"], "rotator")
        old = role["file"].read_text().strip()
        admin.destroy_secret_id(role_name="rotator", secret_id=old, mount_point=role["mount"])
        role["file"].write_text(fresh)
        openbao.revoke_token(vault._client.token)
        with capture_logs() as logs:
            assert vault.read(path) == KVEntry({"a": 1}, 1)
        assert len(events(logs, "vault.relogin")) == 1
    fresh = openbao.new_secret_id(role["mount"], "rotator")
    role["file"].write_text(fresh)
    vault.login()
    assert vault.read(path).version == 1


def test_approle_logs_in_again_transparently_after_its_token_is_revoked(
    make_vault, approle, openbao, path
):
    """A 403 caused by a revoked AppRole token leads to one fresh login and one repeat of the
    operation; the caller sees only the result."""
    role = approle()
    vault = make_vault(role["settings"], environ={})
    vault.write(path, {"a": 1}, cas=0)
    openbao.revoke_token(vault._client.token)
    with capture_logs() as logs:
        assert vault.write(path, {"a": 2}, cas=1) == 2
    relogins = events(logs, "vault.relogin")
    assert len(relogins) == 1
    assert relogins[0]["reason"] == "write was denied"


def test_approle_without_permission_fails_after_exactly_one_relogin(make_vault, approle, path):
    """With a policy that does not allow writing, a write is denied, retried once after a fresh
    login, then raises VaultPermissionError naming the path."""
    role = approle('"read"')
    vault = make_vault(role["settings"], environ={})
    with capture_logs() as logs, pytest.raises(VaultPermissionError, match=f"secret/{path}"):
        vault.write(path, {"a": 1}, cas=0)
    assert len(events(logs, "vault.relogin")) == 1


def test_an_approle_token_that_cannot_be_renewed_is_replaced_by_a_new_login(
    make_vault, approle, clock, path
):
    """A batch token (not renewable) is replaced by a fresh login once a third of its TTL is
    left, before Vault would refuse it."""
    role = approle(token_type="batch", token_ttl="60s")
    vault = make_vault(role["settings"], environ={})
    with capture_logs() as logs:
        vault.read(path)
        clock.advance(30)
        vault.read(path)
        assert not events(logs, "vault.relogin")
        clock.advance(15)
        vault.read(path)
    assert [e["reason"] for e in events(logs, "vault.relogin")] == [
        "the token could not be renewed"
    ]
    assert not events(logs, "vault.renewed")


def test_an_approle_token_is_renewed_when_a_third_remains(make_vault, approle, clock, path):
    """A renewable AppRole token is renewed (not replaced) once less than a third of it is left."""
    role = approle(token_ttl="60s", token_max_ttl="1h")
    vault = make_vault(role["settings"], environ={})
    with capture_logs() as logs:
        vault.read(path)
        clock.advance(45)
        vault.read(path)
    assert len(events(logs, "vault.renewed")) == 1
    assert not events(logs, "vault.relogin")


def test_a_refused_approle_login_is_an_auth_error(make_vault, approle, openbao, path):
    """A secret id that Vault no longer accepts is a VaultAuthError naming the auth mount."""
    role = approle()
    role["file"].write_text("00000000-0000-0000-0000-000000000000")
    vault = make_vault(role["settings"], environ={})
    with pytest.raises(VaultAuthError, match=f"auth/{role['mount']}") as caught:
        vault.read(path)
    assert isinstance(caught.value, PermanentError)


# --- Kubernetes ------------------------------------------------------------------------------


class TokenReviews:
    """A stand-in for the Kubernetes TokenReview API: it approves the JWTs it was told about
    and records every JWT it was asked to review."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.reviewed: list[str] = []
        reviews = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body["spec"]["token"]
                reviews.reviewed.append(token)
                status = {"authenticated": token in reviews.valid}
                if status["authenticated"]:
                    status["user"] = {
                        "username": "system:serviceaccount:default:rotator",
                        "uid": "uid-rotator",
                    }
                answer = json.dumps({"kind": "TokenReview", "status": status}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def new_jwt(self) -> str:
        def b64(value: bytes) -> str:
            return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

        claims = {
            "iss": "kubernetes/serviceaccount",
            "kubernetes.io/serviceaccount/namespace": "default",
            "kubernetes.io/serviceaccount/service-account.name": "rotator",
            "kubernetes.io/serviceaccount/service-account.uid": "uid-rotator",
            "sub": "system:serviceaccount:default:rotator",
            "jti": secrets.token_hex(16),
        }
        header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        jwt = f"{header}.{b64(json.dumps(claims).encode())}.{b64(secrets.token_bytes(64))}"
        self.valid.add(jwt)
        return jwt

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def kubernetes(openbao, vault_settings, tmp_path) -> Iterator[dict[str, Any]]:
    """Kubernetes auth on a fresh mount, reviewing tokens with ``TokenReviews``."""
    reviews = TokenReviews()
    tag = uuid.uuid4().hex[:8]
    mount, policy = f"k8s-{tag}", f"rotator-{tag}"
    openbao.enable_auth("kubernetes", mount)
    admin = openbao.admin().auth.kubernetes
    admin.configure(
        kubernetes_host=reviews.url,
        kubernetes_ca_cert=UNUSED_CA_CERT,
        disable_local_ca_jwt=True,
        mount_point=mount,
    )
    openbao.kv_policy(policy, vault_settings.state_path, ALL_CAPS)
    admin.create_role(
        name="rotator",
        bound_service_account_names=["rotator"],
        bound_service_account_namespaces=["default"],
        policies=[policy],
        ttl="1h",
        mount_point=mount,
    )
    jwt_file = tmp_path / "token"
    jwt_file.write_text(reviews.new_jwt())
    settings = settings_for(
        vault_settings,
        auth=VaultAuthSettings(
            method="kubernetes", role="rotator", jwt_path=str(jwt_file), mount_point=mount
        ),
    )
    yield {"reviews": reviews, "file": jwt_file, "settings": settings}
    reviews.close()


def test_kubernetes_login_reads_the_service_account_token_at_each_login(
    make_vault, kubernetes, openbao, path
):
    """Kubernetes auth logs in with the JWT from jwt_path, and reads the file again at the next
    login, so a token the kubelet refreshed is the one sent."""
    vault = make_vault(kubernetes["settings"], environ={})
    reviews = kubernetes["reviews"]
    assert vault.write(path, {"a": 1}, cas=0) == 1
    first = kubernetes["file"].read_text()
    assert reviews.reviewed == [first]
    refreshed = reviews.new_jwt()
    kubernetes["file"].write_text(refreshed)
    openbao.revoke_token(vault._client.token)
    assert vault.read(path) == KVEntry({"a": 1}, 1)
    assert reviews.reviewed == [first, refreshed]


# --- unknown outcomes, retries, faults ------------------------------------------------------


class FaultyTransport(requests.adapters.HTTPAdapter):
    """Forwards requests to the real server, except the first ``times`` that ``match``, which
    meet ``fault``: ``"lost"`` (sent, then the connection drops before the answer), ``"unsent"``
    (the connection drops before sending) or an HTTP status answered in the server's stead."""

    def __init__(
        self, match: Callable[[requests.PreparedRequest], bool], fault: str | int, times: int = 1
    ) -> None:
        super().__init__()
        self.match, self.fault, self.times = match, fault, times
        self.delivered: list[str] = []
        self.on_lost: Callable[[], None] = lambda: None

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if self.times and self.match(request):
            self.times -= 1
            if self.fault == "unsent":
                raise requests.ConnectionError("connection refused (injected before sending)")
            if self.fault == "lost":
                self._deliver(request, *args, **kwargs).close()
                self.on_lost()
                raise requests.ConnectionError("connection reset (injected after sending)")
            return self._fabricate(request, int(self.fault))
        return self._deliver(request, *args, **kwargs)

    def _deliver(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        self.delivered.append(f"{request.method} {request.path_url}")
        return super().send(request, *args, **kwargs)

    @staticmethod
    def _fabricate(request: requests.PreparedRequest, status: int) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = b'{"errors":["injected"]}'
        response.headers["Content-Type"] = "application/json"
        response.url = str(request.url)
        response.request = request
        return response


def is_write(request: requests.PreparedRequest) -> bool:
    return request.method == "POST" and "/v1/secret/data/" in str(request.path_url)


def inject(vault: Vault, transport: FaultyTransport) -> FaultyTransport:
    vault._session.mount("http://", transport)
    return transport


def test_a_write_whose_answer_was_lost_is_confirmed_by_reading_not_resent(make_vault, path):
    """When a write reached Vault but its answer was lost, the read-back finds our data at
    cas+1 and returns that version without sending the write again."""
    vault = make_vault()
    vault.write(path, {"n": 1}, cas=0)
    faults = inject(vault, FaultyTransport(is_write, "lost"))
    with capture_logs() as logs:
        assert vault.write(path, {"n": 2, "nested": {"k": [1, 2]}}, cas=1) == 2
    assert sum(is_write_line(line) for line in faults.delivered) == 1
    assert vault.read(path) == KVEntry({"n": 2, "nested": {"k": [1, 2]}}, 2)
    assert events(logs, "vault.write_confirmed")[0]["version"] == 2


def is_write_line(line: str) -> bool:
    return line.startswith("POST /v1/secret/data/")


def test_a_write_that_never_reached_vault_is_sent_again_once(make_vault, path, sleeps):
    """When a write was lost before reaching Vault, the read-back still finds version cas, so
    it is sent again, once, and succeeds."""
    vault = make_vault()
    faults = inject(vault, FaultyTransport(is_write, "unsent"))
    with capture_logs() as logs:
        assert vault.write(path, {"n": 1}, cas=0) == 1
    assert sum(is_write_line(line) for line in faults.delivered) == 1
    assert len(events(logs, "vault.resend")) == 1
    assert vault.read(path) == KVEntry({"n": 1}, 1)
    assert len(sleeps) == 1


def test_a_lost_write_overtaken_by_another_writer_is_a_conflict(make_vault, openbao, path):
    """When the answer was lost and another writer wrote after us, the read-back shows neither
    cas nor our data at cas+1: CasConflict, and nothing is sent again."""
    vault = make_vault()
    vault.write(path, {"n": 1}, cas=0)
    faults = inject(vault, FaultyTransport(is_write, "lost"))
    faults.on_lost = lambda: openbao.admin().secrets.kv.v2.create_or_update_secret(
        path=path, secret={"n": "theirs"}, cas=2, mount_point="secret"
    )
    with pytest.raises(CasConflict, match="another writer was first"):
        vault.write(path, {"n": 2}, cas=1)
    assert sum(is_write_line(line) for line in faults.delivered) == 1
    assert vault.read(path) == KVEntry({"n": "theirs"}, 3)


def test_a_write_answered_with_5xx_every_time_gives_up_after_the_bounded_sends(
    make_vault, path, sleeps
):
    """A write that Vault keeps failing with 503 (never applied) is sent ``attempts`` times,
    then raises VaultUnavailable saying nothing was written."""
    vault = make_vault(attempts=3)
    inject(vault, FaultyTransport(is_write, 503, times=100))
    with pytest.raises(VaultUnavailable, match="nothing was written"):
        vault.write(path, {"n": 1}, cas=0)
    assert vault.read(path) == KVEntry(None, 0)
    assert len(sleeps) == 2


def test_transient_read_failures_are_retried_with_the_injected_sleep(make_vault, path, sleeps):
    """Reads retry 502, 503 and dropped connections, sleeping through the injected sleep with
    exponential backoff, and succeed when Vault recovers; each retry is logged."""
    vault = make_vault()
    vault.write(path, {"a": 1}, cas=0)

    def is_read(request: requests.PreparedRequest) -> bool:
        return request.method == "GET" and "/v1/secret/data/" in str(request.path_url)

    for fault in (502, 503, 429, 504, "lost"):
        inject(vault, FaultyTransport(is_read, fault, times=2))
        sleeps.clear()
        with capture_logs() as logs:
            assert vault.read(path) == KVEntry({"a": 1}, 1)
        assert len(sleeps) == 2
        assert all(0 <= s <= 10 for s in sleeps)
        assert len(events(logs, "vault.retry")) == 2


def test_retries_are_bounded_by_attempts(make_vault, path, sleeps):
    """A read that keeps failing is tried ``attempts`` times, then VaultUnavailable says so."""
    vault = make_vault(attempts=3)
    vault.login()
    inject(vault, FaultyTransport(lambda _r: True, 503, times=100))
    with pytest.raises(VaultUnavailable, match="Gave up after 3 attempt") as caught:
        vault.read(path)
    assert caught.value.status == 503
    assert isinstance(caught.value, TemporaryError)
    assert len(sleeps) == 2


def test_a_permanent_refusal_is_not_retried(make_vault, path, sleeps):
    """A 400 is raised at once as VaultRequestError, without retries."""
    vault = make_vault()
    vault.login()
    inject(vault, FaultyTransport(lambda _r: True, 400, times=100))
    with pytest.raises(VaultRequestError, match="injected"):
        vault.read(path)
    assert sleeps == []


# --- health ----------------------------------------------------------------------------------


def test_a_sealed_vault_is_unavailable_and_not_healthy(find_bao_binary, vault_settings, sleeps):
    """On a sealed server (its own, so the others are untouched) operations raise
    VaultUnavailable (503) after bounded retries, and healthy() says it is sealed."""
    with OpenBao(find_bao_binary) as sealed:
        settings = settings_for(vault_settings, address=sealed.address)
        with contextlib.closing(
            Vault(settings, environ={"VAULT_TOKEN": sealed.root_token}, sleep=sleeps.append)
        ) as vault:
            vault.login()
            sealed.admin().sys.seal()
            assert vault.healthy() == (False, f"Vault at {sealed.address} is sealed")
            with pytest.raises(VaultUnavailable) as caught:
                vault.read("x")
            assert caught.value.status == 503
            assert len(sleeps) == 3


@pytest.fixture
def find_bao_binary(openbao: OpenBao) -> str:
    return openbao.binary


def test_healthy_on_a_live_server(make_vault):
    """healthy() is (True, "ok") on a live, unsealed server with a valid token."""
    assert make_vault().healthy() == (True, "ok")


def test_healthy_on_a_closed_port(make_vault, vault_settings):
    """healthy() is (False, reason) when nothing listens, naming the address; it never raises."""
    address = f"http://127.0.0.1:{free_port()}"
    vault = make_vault(settings_for(vault_settings, address=address), attempts=2)
    ok, reason = vault.healthy()
    assert not ok
    assert address in reason


def test_construction_does_not_contact_vault(vault_settings, vault_env):
    """Creating a Vault sends nothing: a closed port is fine until the first operation."""
    settings = settings_for(vault_settings, address=f"http://127.0.0.1:{free_port()}")
    Vault(settings, environ=vault_env).close()


def test_tls_and_namespace_settings_reach_the_client(vault_settings, vault_env, tmp_path):
    """ca_cert is what requests verifies with, tls_verify=false disables verification, and the
    namespace is sent with each request."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read until a TLS connection is made")
    with contextlib.closing(
        Vault(settings_for(vault_settings, ca_cert=str(bundle), namespace="team/a"), environ={})
    ) as vault:
        assert vault._session.verify == str(bundle)
        assert vault._client.adapter._kwargs["verify"] == str(bundle)
        assert vault._client.adapter.namespace == "team/a"
    with contextlib.closing(
        Vault(settings_for(vault_settings, ca_cert=str(bundle), tls_verify=False), environ={})
    ) as vault:
        assert vault._client.adapter._kwargs["verify"] is False


# --- nothing of hvac or requests escapes ----------------------------------------------------


def every_operation(path: str) -> list[Callable[[Vault], object]]:
    return [
        lambda v: v.login(),
        lambda v: v.read(path),
        lambda v: v.write(path, {"a": 1}, cas=1),
        lambda v: v.require_cas(path),
        lambda v: v.read_value(path, "a"),
        lambda v: v.list(path),
        lambda v: v.delete_metadata(path),
    ]


def assert_only_rotator_errors(vault: Vault, path: str) -> list[RotatorError]:
    """Every public method raises only rotator errors (healthy and close raise nothing)."""
    raised: list[RotatorError] = []
    for call in every_operation(path):
        with pytest.raises(RotatorError) as caught:
            call(vault)
        assert type(caught.value).__module__.startswith("rotator.")
        raised.append(caught.value)
    ok, reason = vault.healthy()
    assert not ok
    assert reason
    vault.close()
    return raised


class JunkServer:
    """A socket that answers every connection with the same bytes, whatever was asked."""

    def __init__(self, answer: bytes) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    self.request.recv(65536)
                    self.request.sendall(answer)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def http_answer(status: str, body: bytes, content_type: str = "text/html") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (http_answer("200 OK", b"<html>it works!</html>"), VaultRequestError),
        (http_answer("200 OK", b'{"data": 5, "auth": []}', "application/json"), VaultRequestError),
        (http_answer("504 Gateway Timeout", b"<html>upstream</html>"), VaultUnavailable),
        (http_answer("404 Not Found", b"nothing here"), RotatorError),
        (b"\x00\xff this is not HTTP at all \r\n\r\n", VaultUnavailable),
        (b"", VaultUnavailable),
    ],
    ids=["html-200", "json-of-the-wrong-shape", "proxy-504", "plain-404", "not-http", "hang-up"],
)
def test_a_server_answering_garbage_raises_only_rotator_errors(
    make_vault, vault_settings, answer, expected, path
):
    """Whatever a non-Vault server answers, every public method raises a rotator error (the
    expected kind for login), healthy() reports it, and nothing of hvac or requests escapes."""
    junk = JunkServer(answer)
    try:
        vault = make_vault(settings_for(vault_settings, address=junk.address), attempts=2)
        raised = assert_only_rotator_errors(vault, path)
        assert isinstance(raised[0], expected)
    finally:
        junk.close()


def test_a_closed_port_raises_only_vault_unavailable(make_vault, vault_settings, path, sleeps):
    """Against a port where nothing listens, every operation raises VaultUnavailable after the
    bounded retries, slept through the injected sleep."""
    address = f"http://127.0.0.1:{free_port()}"
    vault = make_vault(settings_for(vault_settings, address=address), attempts=2)
    for error in assert_only_rotator_errors(vault, path):
        assert isinstance(error, VaultUnavailable)
        assert address in str(error)
    assert sleeps


def test_a_revoked_token_raises_only_rotator_errors(make_vault, openbao, vault_settings, path):
    """With a token Vault has revoked, every public method raises a rotator error."""
    token = openbao.create_token(["default"], ttl="1h")
    openbao.revoke_token(token)
    vault = make_vault(environ={"VAULT_TOKEN": token})
    for error in assert_only_rotator_errors(vault, path):
        assert isinstance(error, VaultAuthError)


def test_a_failed_tls_handshake_is_a_request_error_not_retried(
    make_vault, vault_settings, path, sleeps
):
    """An https address whose server does not complete a TLS handshake gives a
    VaultRequestError about TLS, at once: a certificate problem does not pass by itself."""
    server = JunkServer(b"\x16\x03\x01 not a TLS handshake")
    try:
        https = server.address.replace("http://", "https://")
        vault = make_vault(settings_for(vault_settings, address=https))
        with pytest.raises(VaultRequestError, match=r"TLS with https://127\.0\.0\.1"):
            vault.read(path)
        assert sleeps == []
    finally:
        server.close()


# --- no secret in logs or errors ------------------------------------------------------------


@pytest.fixture
def rendered_logs() -> Iterator[io.StringIO]:
    """rotator's real logging (JSON, debug level, redaction) into a buffer; restored after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=buffer)
    yield buffer
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def error_text(error: BaseException) -> str:
    """Everything an error would show: its message, repr, and the whole formatted chain."""
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


def test_no_secret_appears_in_logs_or_errors(
    make_vault, approle, kubernetes, openbao, vault_settings, rendered_logs, clock, path
):
    """Across token, AppRole and Kubernetes logins, renewals, re-logins and failures, neither
    the root token, a secret id, a JWT nor any issued token appears in a log line or an error."""
    errors: list[BaseException] = []
    seen: list[str] = [openbao.root_token]

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except RotatorError as e:
            errors.append(e)

    root = make_vault()
    attempt(lambda: root.write(path, {"a": 1}, cas=0))
    attempt(lambda: root.write(path, {"a": 1}, cas=0))  # a conflict

    role = approle(token_ttl="60s", token_max_ttl="1h")
    seen.append(role["secret_id"])
    by_role = make_vault(role["settings"], environ={})
    attempt(lambda: by_role.read(path))
    seen.append(by_role._client.token)
    clock.advance(45)
    attempt(lambda: by_role.read(path))
    openbao.revoke_token(by_role._client.token)
    attempt(lambda: by_role.read(path))
    seen.append(by_role._client.token)
    role["file"].write_text("0" * 8 + "-0000-0000-0000-" + "0" * 12)  # a refused secret id
    openbao.revoke_token(by_role._client.token)
    attempt(lambda: by_role.read(path))

    by_pod = make_vault(kubernetes["settings"], environ={})
    seen.append(kubernetes["file"].read_text())
    attempt(lambda: by_pod.read(path))
    seen.append(by_pod._client.token)

    revoked = openbao.create_token(["default"], ttl="1h")
    seen.append(revoked)
    openbao.revoke_token(revoked)
    attempt(lambda: make_vault(environ={"VAULT_TOKEN": revoked}).read(path))

    assert len(errors) >= 3
    logged = rendered_logs.getvalue()
    assert "vault.login" in logged
    assert "vault.relogin" in logged
    assert "vault.renewed" in logged
    for secret in seen:
        assert secret not in logged
        for error in errors:
            assert secret not in error_text(error)


def test_an_unreadable_secret_file_does_not_chain_its_content(make_vault, approle, tmp_path, path):
    """A secret id file that is not UTF-8 gives a VaultAuthError that carries neither the bytes
    nor a chained UnicodeDecodeError holding them."""
    role = approle()
    role["file"].write_bytes(b"\xff\xfe-secret-bytes-that-are-not-utf8")
    vault = make_vault(role["settings"], environ={})
    with pytest.raises(VaultAuthError) as caught:
        vault.read(path)
    assert "secret-bytes" not in error_text(caught.value)
    assert caught.value.__cause__ is None


def test_a_one_shot_vault_does_not_look_up_its_static_token(openbao, vault_settings):
    """Without renewal (one-shot commands) a static token is used as given, no lookup-self:
    that call only serves renewing a token, which a short process never does. A renewing
    Vault does look it up and learns its TTL."""
    token = openbao.create_token(["default"], ttl="1h", renewable=True)
    policy = f"test-oneshot-{token[-6:]}"
    openbao.kv_policy(policy, vault_settings.state_path, '"read"')
    token = openbao.create_token([policy], ttl="1h", renewable=True)
    one_shot = Vault(vault_settings, environ={"VAULT_TOKEN": token}, renew=False)
    long_lived = Vault(vault_settings, environ={"VAULT_TOKEN": token}, renew=True)
    try:
        one_shot.read(f"{vault_settings.state_path}/nothing")
        long_lived.read(f"{vault_settings.state_path}/nothing")
        assert one_shot._token._lease.ttl == 0  # never asked
        assert long_lived._token._lease.ttl > 0  # asked: about an hour
        assert openbao.lookup_token(token)["num_uses"] == 0
    finally:
        one_shot.close()
        long_lived.close()
