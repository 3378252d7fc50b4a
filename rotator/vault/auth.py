"""The credential half of the Vault module: logging in, and keeping our token alive.

Theory of operation
-------------------
hvac logs in when asked and renews nothing, so this module keeps the token:

* ``LoginSource`` reads what a login needs, fresh at every login: the static token (``token``),
  the role id and secret id (``approle``), the service-account JWT (``kubernetes``). Files are
  re-read because what writes them (Vault Agent, a secret-id rotator, the kubelet refreshing a
  projected service-account token) replaces them while we run. Every secret is wrapped in
  ``SecretValue`` the moment it is read, which registers it for log redaction; errors name the
  variable or the file, never the value.
* ``TokenLease`` is what Vault told us about the token's lifetime, timed by our own monotonic
  clock (never the wall clock, never Vault's ``expire_time``). A TTL of 0 (root and dev tokens)
  never expires and is never renewed.
* ``TokenKeeper`` logs in on first use; before each operation, once less than a third of the TTL
  remains, it renews the token (two thirds of slack if Vault is briefly away), and logs in again
  when renewal is impossible, refused, or no longer extends the token (its max TTL is near). A
  static token cannot be replaced: it is used while it lasts, and ``VaultAuthError`` follows
  once it has expired or Vault no longer knows it. Each login bumps a generation number, so that
  threads that all saw the same 403 log in again only once.

Requests go through the ``Runner`` that ``rotator.vault`` passes in, which retries transient
failures and turns every hvac and requests exception into a ``rotator.vault`` error.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import hvac
import requests

from rotator.config import VaultAuthSettings
from rotator.errors import PermanentError, RotatorError, TemporaryError
from rotator.logs import get_logger
from rotator.redaction import SecretValue
from rotator.vault import deadline
from rotator.vault.errors import VaultAuthError

T = TypeVar("T")

DEFAULT_MOUNT_POINTS: Final = {"token": "token", "approle": "approle", "kubernetes": "kubernetes"}

log = get_logger()


class Runner(Protocol):
    """Runs one request with retries, raising only rotator errors (``Vault._retrying``)."""

    def __call__(self, operation: str, path: str, request: Callable[[], T]) -> T: ...


def json_object(answer: object) -> dict[str, Any]:
    """hvac's JSON adapter returns a dict for a 200 with a JSON body, else the response."""
    if isinstance(answer, requests.Response):
        answer = answer.json()
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    return answer


@dataclass(frozen=True, slots=True)
class TokenLease:
    """Our token's lifetime as Vault reported it, timed by our monotonic clock."""

    #: Seconds the token was valid for when it was issued or last renewed; 0 means forever.
    ttl: float
    renewable: bool
    #: Monotonic time at which ``ttl`` started to run.
    started: float
    #: Nothing can extend it any more (a static token past renewal): used until it expires.
    final: bool = False

    @classmethod
    def from_auth(cls, auth: Mapping[str, Any], now: float) -> TokenLease:
        """From the ``auth`` block of a login or renewal answer."""
        return cls(float(auth["lease_duration"]), bool(auth["renewable"]), now)

    @classmethod
    def from_lookup(cls, data: Mapping[str, Any], now: float) -> TokenLease:
        """From ``lookup-self`` data: ``ttl`` is what remains, ``creation_ttl`` the full span."""
        remaining = float(data.get("ttl") or 0)
        span = max(float(data.get("creation_ttl") or 0), remaining)
        # Start the span in the past, so that "a third of it remains" keeps its meaning.
        return cls(span, bool(data.get("renewable")), now - (span - remaining))

    def remaining(self, now: float) -> float:
        return self.started + self.ttl - now

    def expired(self, now: float) -> bool:
        return self.ttl > 0 and self.remaining(now) <= 0

    def due(self, now: float) -> bool:
        """Less than a third of the TTL is left: time to renew or log in again."""
        return self.ttl > 0 and self.remaining(now) < self.ttl / 3

    def renewed(self, auth: Mapping[str, Any], now: float) -> TokenLease | None:
        """The lease after a renewal, or None if renewal no longer helps (max TTL near)."""
        granted = float(auth["lease_duration"])
        if self.ttl > 0 and granted < self.ttl / 3:
            return None
        return TokenLease(granted, bool(auth["renewable"]), now)


class LoginSource:
    """Reads the credentials of the configured auth method, fresh at every call."""

    def __init__(self, settings: VaultAuthSettings, environ: Mapping[str, str]) -> None:
        self.method = settings.method
        self.mount_point = settings.mount_point or DEFAULT_MOUNT_POINTS[settings.method]
        self._settings = settings
        self._environ = environ

    @property
    def rereadable(self) -> bool:
        """The token comes from a file, which its writer may replace while we run."""
        return self.method == "token" and bool(self._settings.token_file)

    def token(self) -> SecretValue:
        settings = self._settings
        if settings.token_file:
            return SecretValue(self._file(settings.token_file, "the Vault token"))
        return SecretValue(self._env(settings.token_env, "the Vault token"))

    def approle(self) -> tuple[str, SecretValue]:
        """``(role_id, secret_id)``; the role id names the role and is not secret."""
        settings = self._settings
        if settings.role_id:
            role_id = settings.role_id
        elif settings.role_id_env:
            role_id = self._env(settings.role_id_env, "the AppRole role_id")
        else:
            role_id = self._file(str(settings.role_id_file), "the AppRole role_id")
        if settings.secret_id_env:
            secret_id = self._env(settings.secret_id_env, "the AppRole secret_id")
        else:
            secret_id = self._file(str(settings.secret_id_file), "the AppRole secret_id")
        return role_id, SecretValue(secret_id)

    def kubernetes(self) -> tuple[str, SecretValue]:
        """``(role, jwt)``: the Vault role and the pod's service-account token."""
        jwt = self._file(self._settings.jwt_path, "the Kubernetes service-account token")
        return str(self._settings.role), SecretValue(jwt)

    def _env(self, name: str, what: str) -> str:
        value = self._environ.get(name, "").strip()
        if not value:
            raise VaultAuthError(f"{what} is expected in the environment variable {name}: unset")
        return value

    @staticmethod
    def _file(path: str, what: str) -> str:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
            # Not chained: a UnicodeDecodeError carries the file's bytes, i.e. the secret.
            raise VaultAuthError(f"cannot read {what} from {path}: {reason}") from None
        if not value:
            raise VaultAuthError(f"{what} file {path} is empty")
        return value


class TokenKeeper:
    """Our Vault token: logged in lazily, renewed at a third of its TTL, replaced if it can be."""

    def __init__(
        self,
        client: hvac.Client,
        source: LoginSource,
        *,
        run: Runner,
        monotonic: Callable[[], float],
        address: str,
        failed: Callable[[], None] | None = None,
        look_up: bool = True,
    ) -> None:
        self._client = client
        self._source = source
        self._run = run
        self._monotonic = monotonic
        self._address = address
        # Told of every failed login and every token found dead (the daemon counts them for
        # the RotatorVaultAuthFailing alert); never of anything secret.
        self._failed = failed
        # One login or renewal at a time; the other threads wait for its result (a bounded
        # caller, such as a hook call, no longer than its deadline allows).
        self._lock = threading.Lock()
        # Asking a static token's TTL (lookup-self) only matters to a process that lives long
        # enough to renew it; a bad token still shows up at the first refused call (``blame``).
        self._look_up = look_up
        self._lease: TokenLease | None = None
        self._generation = 0
        #: Set when Vault refused our credentials or said the token is dead; cleared by a login.
        self._dead = False

    @property
    def replaceable(self) -> bool:
        """AppRole and Kubernetes logins can be redone, and a token file read again (Vault
        Agent replaces it); only a token from the environment is what it is."""
        return self._source.method != "token" or self._source.rereadable

    def fresh(self) -> int:
        """Make sure the token is usable now; returns the login generation it belongs to."""
        with deadline.holding(self._lock):
            lease = self._lease
            if lease is None:
                self._login("first use")
            elif lease.due(now := self._monotonic()):
                self._refresh(lease, now)
            return self._generation

    def login(self, reason: str) -> None:
        with deadline.holding(self._lock):
            self._login(reason)

    def state(self) -> str | None:
        """Why the token is not usable, as far as this process knows without asking Vault
        (``None``: it is, or nothing was asked of Vault yet). What ``/readyz`` tells: asking
        Vault (``lookup-self``) every few seconds would be an audit-log line each time."""
        lease = self._lease
        if self._dead:
            return "Vault refused the token or the login (see vault.* log lines)"
        if lease is not None and lease.expired(self._monotonic()):
            return "the Vault token has expired"
        return None

    def replace(self, generation: int, reason: str) -> None:
        """Log in again after a 403, unless another thread already did since ``generation``."""
        with deadline.holding(self._lock):
            if generation == self._generation:
                self._login(reason, again=True)

    def blame(self, denied: RotatorError) -> None:
        """After a 403 with a static token: ``VaultAuthError`` if Vault no longer knows it."""
        try:
            self._run("lookup", "", self._client.auth.token.lookup_self)
        except PermanentError as e:
            if e.status != 403:
                raise
            self._tell_failed()
            raise VaultAuthError(
                "The Vault token was rejected (revoked or expired), and rotator cannot replace "
                "a static token: provide a valid one, or use AppRole or Kubernetes auth.",
                status=403,
                operation=denied.operation,
            ) from e

    def _refresh(self, lease: TokenLease, now: float) -> None:
        refusal: RotatorError | None = None
        if lease.renewable and not lease.final and not lease.expired(now):

            def renew() -> TokenLease | None:
                answer = self._client.auth.token.renew_self()
                return lease.renewed(json_object(answer)["auth"], self._monotonic())

            try:
                renewed = self._run("renew", "", renew)
            except TemporaryError:
                if lease.expired(self._monotonic()):
                    self._tell_failed()
                    raise
                log.warning("vault.renew_postponed", remaining_s=round(lease.remaining(now)))
                return
            except RotatorError as e:
                renewed, refusal = None, e
            if renewed is not None:
                self._lease = renewed
                log.info("vault.renewed", ttl_s=renewed.ttl, renewable=renewed.renewable)
                return
        if self.replaceable:
            self._login("the token could not be renewed", again=True)
            return
        if lease.expired(now) or (refusal is not None and refusal.status == 403):
            self._tell_failed()
            raise VaultAuthError(
                "The Vault token has expired or was revoked, and rotator cannot replace a "
                "static token: give it a longer TTL, make it renewable or periodic, or use "
                "AppRole or Kubernetes auth.",
                operation="renew",
            ) from refusal
        if not lease.final:
            # Use it while it lasts; say so once, not before every operation.
            self._lease = dataclasses.replace(lease, final=True)
            log.warning("vault.token_expiring", remaining_s=round(lease.remaining(now)))

    def _tell_failed(self) -> None:
        self._dead = True
        if self._failed is not None:
            try:
                self._failed()
            except Exception:  # a metrics bug must never cost a Vault operation
                log.exception("vault.auth_failure_hook_failed")

    def _login(self, reason: str, *, again: bool = False) -> None:
        try:
            self._log_in(reason, again=again)
        except PermanentError:
            # Vault refused the login (an unreachable Vault is a TemporaryError, not counted:
            # the RotatorVaultAuthFailing alert is about credentials, not outages).
            self._tell_failed()
            raise

    def _log_in(self, reason: str, *, again: bool) -> None:
        source, auth = self._source, self._client.auth
        if source.method == "token":
            token = source.token()
        elif source.method == "approle":
            role_id, secret_id = source.approle()
        else:
            role, jwt = source.kubernetes()

        def login() -> TokenLease:
            if source.method == "token":
                self._client.token = token.reveal()
                if not self._look_up:
                    return TokenLease(0.0, renewable=False, started=self._monotonic())
                data = json_object(auth.token.lookup_self())["data"]
                return TokenLease.from_lookup(data, self._monotonic())
            if source.method == "approle":
                answer = auth.approle.login(
                    role_id=role_id, secret_id=secret_id.reveal(), mount_point=source.mount_point
                )
            else:
                answer = auth.kubernetes.login(
                    role=role, jwt=jwt.reveal(), mount_point=source.mount_point
                )
            block = json_object(answer)["auth"]
            SecretValue(str(block["client_token"]))  # registers the token for redaction
            return TokenLease.from_auth(block, self._monotonic())

        try:
            lease = self._run("login", "", login)
        except PermanentError as e:
            # Refusals of the credentials; a server that does not answer like Vault is not one.
            if isinstance(e, VaultAuthError) or e.status not in {400, 401, 403, 404}:
                raise
            refused = "token was rejected" if source.method == "token" else "login was refused"
            raise VaultAuthError(
                f"The Vault {refused} ({source.method} auth at auth/{source.mount_point} on "
                f"{self._address}): {e.message}",
                status=e.status,
                operation="login",
            ) from e
        self._lease = lease
        self._dead = False
        self._generation += 1
        # The first login of every one-shot command is routine: only a new login is news.
        (log.info if again else log.debug)(
            "vault.relogin" if again else "vault.login",
            method=source.method,
            reason=reason,
            ttl_s=lease.ttl,
            renewable=lease.renewable,
        )
