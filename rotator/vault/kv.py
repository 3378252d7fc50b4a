"""The Vault (or OpenBao) adapter: KV v2 records and secrets, login, token renewal, retries.

Theory of operation
-------------------
Every public method is one logical operation on ``<mount>/<path>``, run by ``_call``:

1. The ``TokenKeeper`` (``rotator.vault.auth``) logs in on first use, renews the token once
   less than a third of its TTL remains, and logs in again when renewal is impossible.
2. The request runs under a tenacity loop (``attempts`` in all, exponential backoff with full
   jitter, injected sleep) that repeats only what may pass: connection errors and timeouts, 429,
   5xx, a sealed or standby Vault. Permanent refusals are raised at once.
3. A 403 means our token lost its rights or its life. With AppRole or Kubernetes we log in once
   more and repeat the request once; a second 403 is a ``VaultPermissionError`` naming the path
   and the capability the policy lacks. A static token is looked up instead: if Vault no longer
   knows it, the error is ``VaultAuthError``.

Writes differ: records are fenced by KV v2 check-and-set, so a write is never repeated blindly.
When its outcome is unknown (transport error, timeout, 5xx after sending), the path is read back:
version ``cas + 1`` holding exactly our data means it happened; version ``cas`` means it did not,
and it is sent again (at most ``attempts`` sends); anything else means another writer won, which
is a ``CasConflict`` like any other.

This module and its credential half, ``rotator.vault.auth``, are the only ones in rotator that
import hvac or requests. Their exceptions never leave; each is wrapped ``from`` the original::

    RotatorError
    ├── CasConflict               another writer was first: re-read, decide again (.path)
    ├── TemporaryError
    │   └── VaultUnavailable      unreachable, timeout, 429, 5xx, sealed, after bounded retries
    └── PermanentError
        ├── VaultAuthError        cannot log in, or the static token is dead
        ├── VaultPermissionError  403 even with a fresh token; names the path and capability
        └── VaultRequestError     any other refusal: no such mount, not KV v2, TLS, a bad answer

Messages name addresses, mounts and paths, never a token, secret id, JWT or secret value.
"""

from __future__ import annotations

import builtins
import email.utils
import json
import os
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar, cast

import hvac
import hvac.adapters
import hvac.exceptions as hvac_errors
import requests
import requests.exceptions
import tenacity

from rotator.config import VaultSettings
from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.redaction import SecretValue, scrub
from rotator.vault.auth import LoginSource, TokenKeeper, json_object
from rotator.vault.clock import SharedClock
from rotator.vault.errors import (
    CasConflict,
    VaultAuthError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)

T = TypeVar("T")

#: Seconds: the first retry waits up to this long (full jitter), doubling up to ``MAX_BACKOFF``.
INITIAL_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 10.0

_TRANSIENT_VAULT: Final = (
    hvac_errors.VaultDown,
    hvac_errors.InternalServerError,
    hvac_errors.BadGateway,
    hvac_errors.RateLimitExceeded,
    hvac_errors.VaultNotInitialized,
)
# SSLError is a ConnectionError too, but a certificate that fails to verify will keep failing.
_TRANSIENT_TRANSPORT: Final = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_STATUS: Final[dict[type[Exception], int]] = {
    hvac_errors.InvalidRequest: 400,
    hvac_errors.Unauthorized: 401,
    hvac_errors.Forbidden: 403,
    hvac_errors.InvalidPath: 404,
    hvac_errors.RateLimitExceeded: 429,
    hvac_errors.InternalServerError: 500,
    hvac_errors.VaultNotInitialized: 501,
    hvac_errors.BadGateway: 502,
    hvac_errors.VaultDown: 503,
}
_HVAC_5XX: Final = frozenset({500, 501, 502, 503})
# The API path (under the mount) and policy capability each operation needs, so that a 403 can
# tell the operator exactly what to grant.
_NEEDS: Final = {
    "read": ("data", "read"),
    "write": ("data", "create and update"),
    "list": ("metadata", "list"),
    "require_cas": ("metadata", "create and update"),
    "delete_metadata": ("metadata", "delete"),
}

log = get_logger()

#: ``(operation, status, seconds)`` for one request to Vault; status is the HTTP status as text,
#: or "error" when no answer came back.
Observe = Callable[[str, str, float], None]

# The HTTP status of the latest answer the adapter received, per thread: hvac hands the caller
# a dict or an exception, not the status, and a read's 404 is folded into an empty entry.
_answer = threading.local()


@dataclass(frozen=True, slots=True)
class KVEntry:
    """The latest version of a KV v2 secret."""

    #: None when the path never existed, or its latest version is deleted or destroyed.
    data: dict[str, Any] | None = field(repr=False)  # may hold material: never in a repr
    #: The latest version number (0 if never written): the ``cas`` for the next write.
    version: int = 0
    #: When Vault created that version, on Vault's clock (None if never written).
    created_time: datetime | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        keys = sorted(self.data) if self.data is not None else None
        return f"KVEntry(keys={keys}, version={self.version})"


class _Adapter(hvac.adapters.JSONAdapter):
    """hvac's JSON adapter, except that any 5xx hvac has no class for (a proxy's 504) counts as
    a server error rather than an ``UnexpectedError``, so that it is retried."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response | dict[Any, Any]:
        wants_errors = kwargs.pop("raise_exception", True) and not self.ignore_exceptions
        answer = super().request(*args, raise_exception=False, **kwargs)
        # JSONAdapter turns exactly the 200s with a JSON body into a dict.
        _answer.status = answer.status_code if isinstance(answer, requests.Response) else 200
        if wants_errors and isinstance(answer, requests.Response) and not answer.ok:
            raise _vault_error_from(answer)
        return answer


def _vault_error_from(response: requests.Response) -> hvac_errors.VaultError:
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    status = response.status_code
    if status >= 500 and status not in _HVAC_5XX:
        status = 500
    return hvac_errors.VaultError.from_status(
        status,
        None if errors else response.text,
        errors=errors,
        method=response.request.method,
        url=response.url,
        text=response.text,
        json=body,
    )


class Vault:
    """One KV v2 mount of one Vault, with login, renewal and retries; threads may share it."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        environ: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = 4,
        observe: Observe | None = None,
        auth_failed: Callable[[], None] | None = None,
        connections: int = 16,
        renew: bool = True,
    ) -> None:
        """``observe`` hears of every request sent (operation, status, seconds; nothing secret);
        ``auth_failed`` of every failed login and every token found dead."""
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.settings = settings
        self._mount = settings.mount
        self._sleep = sleep
        self._observe = observe
        self._attempts = attempts
        self._mount_checked = False
        verify: bool | str = (settings.ca_cert or True) if settings.tls_verify else False
        self._session = requests.Session()
        # hvac prefers a session's own ``verify`` to its argument: keep the two equal.
        self._session.verify = verify
        # requests would scan the whole environment for proxy settings on every request (with
        # a token variable per target, 1,000 targets made that most of a pass): read them once.
        self._session.trust_env = False
        self._session.proxies = urllib.request.getproxies()
        # Enough pooled connections for every reconcile worker, so none is opened per request.
        pooled = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=max(1, connections))
        self._session.mount("http://", pooled)
        self._session.mount("https://", pooled)
        #: Vault's time, told by every answer's Date header and every version's created_time.
        self.clock = SharedClock(monotonic)
        self._monotonic = monotonic
        self._session.hooks["response"].append(self._saw_answer)
        self._client = hvac.Client(
            url=settings.address,
            # Not None: hvac would then read $VAULT_TOKEN or ~/.vault-token behind our back.
            token="",
            verify=verify,
            # The stubs say int; requests takes float seconds.
            timeout=cast("int", settings.timeout),
            session=self._session,
            namespace=settings.namespace,
            adapter=_Adapter,
        )
        self._token = TokenKeeper(
            self._client,
            LoginSource(settings.auth, os.environ if environ is None else environ),
            run=self._retrying,
            monotonic=monotonic,
            address=settings.address,
            failed=auth_failed,
            look_up=renew,
        )

    def __repr__(self) -> str:
        return f"Vault(address={self.settings.address!r}, mount={self._mount!r})"

    def _saw_answer(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        """Every answer tells Vault's time (to the second) in its Date header."""
        moment = _http_date(response.headers.get("Date"))
        if moment is not None:
            self.clock.observe(moment, self._monotonic())

    # --- the operations -------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (otherwise done before the first operation)."""
        self._token.login("explicit")

    def read(self, path: str) -> KVEntry:
        """The latest version of ``path`` (relative to the mount)."""
        path = _relative(path)

        def read() -> KVEntry:
            try:
                answer = self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self._mount, raise_on_deleted_version=False
                )
            except hvac_errors.InvalidPath as e:
                # A deleted or destroyed latest version still answers with its metadata.
                if isinstance(e.json, dict) and isinstance(e.json.get("data"), dict):
                    return _entry(e.json)
                if _no_route(e):
                    raise
                return KVEntry(None, 0)
            return _entry(answer)

        entry = self._call("read", path, read)
        if entry.created_time is not None:
            self.clock.observe(entry.created_time)
        return entry

    def write(self, path: str, data: Mapping[str, Any], *, cas: int) -> int:
        """Write ``data`` if the latest version is still ``cas`` (0: must not exist yet).

        Returns the new version; raises ``CasConflict`` when another writer was first.
        """
        path = _relative(path)
        if cas < 0:
            raise ValueError("cas is 0 (must not exist yet) or the version that was read")
        # What Vault will hand back, so the read-back comparison compares like with like.
        payload = json.loads(json.dumps(dict(data)))

        def send() -> int:
            answer = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=payload, cas=cas, mount_point=self._mount
            )
            written = json_object(answer)["data"]
            created = _vault_time(written.get("created_time"))
            if created is not None:
                self.clock.observe(created)
            return int(written["version"])

        for sending in range(1, self._attempts + 1):
            try:
                return self._call("write", path, send, retry=False)
            except VaultUnavailable as e:
                version = self._settle(path, payload, cas, e)
            if version is not None:
                return version
            if sending < self._attempts:
                # The same full-jitter backoff as ``_retrying``.
                ceiling = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (sending - 1))
                self._sleep(random.uniform(0, ceiling))
                log.warning("vault.resend", path=self._where(path), attempt=sending + 1)
        raise VaultUnavailable(
            f"Vault did not accept the write to {self._where(path)} after {self._attempts} "
            "sends; nothing was written.",
            operation="write",
        )

    def require_cas(self, path: str) -> None:
        """Make every write to ``path`` require check-and-set (idempotent)."""
        path = _relative(path)
        self._call(
            "require_cas",
            path,
            lambda: self._client.secrets.kv.v2.update_metadata(
                path=path, cas_required=True, mount_point=self._mount
            ),
        )

    def read_value(self, path: str, key: str) -> SecretValue:
        """One key of a KV v2 secret, such as an Intercom token kept in Vault."""
        entry = self.read(path)
        where = self._where(path)
        if entry.data is None:
            raise VaultRequestError(
                f"Nothing is stored at {where} (never written, or its latest version is "
                f"deleted): store the value under the key {key!r} there.",
                operation="read",
            )
        value = entry.data.get(key)
        if not isinstance(value, str) or not value:
            keys = ", ".join(sorted(entry.data)) or "none"
            problem = "has no key" if key not in entry.data else "has no non-empty string under"
            raise VaultRequestError(
                f"{where} {problem} {key!r} (its keys: {keys}).", operation="read"
            )
        return SecretValue(value)

    def list(self, path: str) -> builtins.list[str]:
        """The keys under ``path`` (sub-folders end with ``/``); [] when there are none."""
        path = path.strip("/")

        def keys() -> builtins.list[str]:
            try:
                answer = self._client.secrets.kv.v2.list_secrets(path=path, mount_point=self._mount)
            except hvac_errors.InvalidPath as e:
                if _no_route(e):
                    raise
                return []
            return [str(key) for key in json_object(answer)["data"]["keys"]]

        return self._call("list", path, keys)

    def delete_metadata(self, path: str) -> None:
        """Remove ``path`` with every version and its metadata."""
        path = _relative(path)
        self._call(
            "delete_metadata",
            path,
            lambda: self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self._mount
            ),
        )

    def capabilities(self, paths: builtins.list[str]) -> dict[str, builtins.list[str]]:
        """Our token's capabilities on each API path (``<mount>/data/<path>``, from the Vault
        root), asked of ``sys/capabilities-self``: write access checked without writing."""
        wanted = [p.strip("/") for p in paths]

        def ask() -> dict[str, builtins.list[str]]:
            answer = json_object(
                self._client.adapter.post("/v1/sys/capabilities-self", json={"paths": wanted})
            )
            inner = answer.get("data")
            data = inner if isinstance(inner, dict) else answer
            found = {}
            for path in wanted:
                caps = data.get(path, data.get("capabilities") if len(wanted) == 1 else None)
                if not isinstance(caps, builtins.list):
                    raise ValueError("no capabilities for a path asked about")
                found[path] = sorted(str(c) for c in caps)
            return found

        return self._call("capabilities", "", ask)

    def healthy(self) -> tuple[bool, str]:
        """``(True, "ok")`` when Vault is reachable, unsealed and our token valid; never raises."""
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
            self._call("health", "", self._client.auth.token.lookup_self)
        except RotatorError as e:
            return False, str(e)
        except Exception as e:  # noqa: BLE001 - a readiness check reports failures, never raises
            return False, f"unexpected {type(e).__name__} while checking Vault"
        return True, "ok"

    def close(self) -> None:
        self._session.close()

    # --- one operation: token, retries, one re-login on 403 ---------------------------------

    def _call(
        self,
        operation: str,
        path: str,
        request: Callable[[], T],
        *,
        retry: bool = True,
        authenticated: bool = True,
    ) -> T:
        for last_chance in (False, True):
            generation = self._token.fresh() if authenticated else 0
            if authenticated and not self._mount_checked and operation in _NEEDS:
                self._check_mount()
            try:
                if retry:
                    return self._retrying(operation, path, request)
                return self._once(operation, path, request)
            except VaultPermissionError as e:
                if last_chance or not authenticated:
                    raise
                if not self._token.replaceable:
                    self._token.blame(e)
                    raise
                self._token.replace(generation, f"{operation} was denied")
        raise AssertionError("unreachable: the second chance returns or raises")  # pragma: no cover

    def _retrying(self, operation: str, path: str, request: Callable[[], T]) -> T:
        def log_retry(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "vault.retry",
                operation=operation,
                attempt=state.attempt_number,
                of=self._attempts,
                wait_s=round(state.upcoming_sleep, 3),
                reason=str(error),
            )

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._attempts),
            wait=tenacity.wait_random_exponential(INITIAL_BACKOFF, MAX_BACKOFF),
            retry=tenacity.retry_if_exception_type(VaultUnavailable),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(operation, path, request)
        except VaultUnavailable as e:
            e.message += f" Gave up after {self._attempts} attempt(s)."
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _once(self, operation: str, path: str, request: Callable[[], T]) -> T:
        try:
            if self._observe is None:
                return request()
            return _observed(self._observe, operation, request)
        except RotatorError:
            raise
        except hvac_errors.VaultError as e:
            raise self._refusal(operation, path, e) from e
        # Some requests exceptions are ValueErrors too (InvalidURL): only this one is an answer.
        except requests.exceptions.JSONDecodeError as e:
            raise self._bad_answer(operation, path, e) from e
        except requests.exceptions.RequestException as e:
            raise self._transport_failure(operation, path, e) from e
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise self._bad_answer(operation, path, e) from e
        # The promise of this module: nothing else escapes it, whatever the libraries raise.
        except Exception as e:
            raise VaultRequestError(
                f"Unexpected {type(e).__name__} during {self._subject(operation, path)}: "
                f"{scrub(str(e))}",
                operation=operation,
            ) from e

    def _bad_answer(self, operation: str, path: str, e: Exception) -> VaultRequestError:
        return VaultRequestError(
            f"The answer to {self._subject(operation, path)} is not what Vault sends "
            f"({type(e).__name__}); is {self.settings.address} a Vault server?",
            operation=operation,
        )

    def _refusal(self, operation: str, path: str, e: hvac_errors.VaultError) -> RotatorError:
        status = _STATUS.get(type(e))
        detail = _detail(e)
        subject = self._subject(operation, path)
        if isinstance(e, hvac_errors.Forbidden):
            api, capability = _NEEDS.get(operation, ("", ""))
            grant = (
                f" The token's policy needs {capability} on {self._mount}/{api}/{path}."
                if api
                else ""
            )
            return VaultPermissionError(
                f"Vault denied {subject} ({detail}).{grant}",
                status=status,
                operation=operation,
            )
        if isinstance(e, hvac_errors.Unauthorized):
            return VaultAuthError(
                f"Vault refused our credentials for {subject} ({detail}).",
                status=status,
                operation=operation,
            )
        if isinstance(e, hvac_errors.InvalidRequest) and "check-and-set" in detail:
            return CasConflict(
                f"{self._where(path)} changed since the version given as cas was read ({detail}): "
                "another writer was first. Re-read it and decide again.",
                path=path,
            )
        if _no_route(e) and operation in _NEEDS:
            return VaultRequestError(
                f"Nothing is mounted at {self._mount}/ on {self.settings.address} ({detail}): "
                "check [vault] mount (a KV v2 secrets engine) and namespace.",
                status=status,
                operation=operation,
            )
        if isinstance(e, _TRANSIENT_VAULT):
            return VaultUnavailable(
                f"Vault at {self.settings.address} could not serve {subject} ({status}: {detail}).",
                status=status,
                operation=operation,
            )
        return VaultRequestError(
            f"Vault refused {subject} ({status or 'unexpected answer'}: {detail}).",
            status=status,
            operation=operation,
        )

    def _transport_failure(
        self, operation: str, path: str, e: requests.exceptions.RequestException
    ) -> RotatorError:
        detail = scrub(f"{type(e).__name__}: {e}")
        where = self._subject(operation, path)
        if isinstance(e, requests.exceptions.SSLError):
            return VaultRequestError(
                f"TLS with {self.settings.address} failed during {where} ({detail}): check "
                "[vault] address, ca_cert and tls_verify.",
                operation=operation,
            )
        if isinstance(e, _TRANSIENT_TRANSPORT):
            return VaultUnavailable(
                f"Could not reach Vault at {self.settings.address} for {where} ({detail}).",
                operation=operation,
            )
        return VaultRequestError(
            f"Cannot send {where} to {self.settings.address} ({detail}): check [vault] address.",
            operation=operation,
        )

    def _where(self, path: str) -> str:
        return f"{self._mount}/{path.strip('/')}"

    def _subject(self, operation: str, path: str) -> str:
        """``read of secret/x`` for an operation on a path, ``login`` for the others."""
        return f"{operation} of {self._where(path)}" if operation in _NEEDS else operation

    # --- writes whose outcome is unknown ----------------------------------------------------

    def _settle(
        self, path: str, payload: dict[str, Any], cas: int, lost: VaultUnavailable
    ) -> int | None:
        """After a write with no answer: its version if it happened, None if it did not."""
        try:
            entry = self.read(path)
        except VaultUnavailable as e:
            raise VaultUnavailable(
                f"The write to {self._where(path)} may or may not have happened ({lost}), and "
                f"reading it back failed too ({e}). Re-read it before deciding again.",
                operation="write",
            ) from e
        if entry.version == cas + 1 and entry.data == payload:
            log.info("vault.write_confirmed", path=self._where(path), version=entry.version)
            return entry.version
        if entry.version == cas:
            return None
        raise CasConflict(
            f"{self._where(path)} is at version {entry.version} with other data after our "
            f"write at cas {cas} lost its answer: another writer was first. Re-read it and "
            "decide again.",
            path=path,
        )

    def _check_mount(self) -> None:
        """Fail early and clearly when the mount is not KV v2 (the Vault CLI asks the same)."""
        try:
            info = self._once(
                "check",
                "",
                lambda: json_object(
                    self._client.adapter.get(f"/v1/sys/internal/ui/mounts/{self._mount}")
                )["data"],
            )
        except VaultUnavailable:
            return  # ask again before the next operation
        except RotatorError:
            # Not allowed to ask, or an old server: the operations themselves will tell.
            self._mount_checked = True
            return
        self._mount_checked = True
        kind = info.get("type")
        version = str((info.get("options") or {}).get("version", ""))
        if kind != "kv" or version != "2":
            found = f"KV version {version or 1}" if kind == "kv" else f"a {kind!r} engine"
            raise VaultRequestError(
                f"{self._mount}/ on {self.settings.address} is {found}, not KV v2: check "
                "[vault] mount.",
                operation="check",
            )


def _observed(observe: Observe, operation: str, request: Callable[[], T]) -> T:
    """``request()``, reported to ``observe`` with its answer's status and its duration."""
    _answer.status = None
    started = time.monotonic()
    try:
        return request()
    finally:
        status = getattr(_answer, "status", None)
        seconds = time.monotonic() - started
        try:
            observe(operation, "error" if status is None else str(status), seconds)
        except Exception:  # a metrics bug must never cost a Vault operation
            log.exception("vault.observe_failed", operation=operation)


def _relative(path: str) -> str:
    path = path.strip("/")
    if not path:
        raise ValueError("a path under the mount is required")
    return path


def _entry(answer: object) -> KVEntry:
    data = json_object(answer)["data"]
    metadata = data["metadata"]
    version = int(metadata["version"])
    content = data.get("data")
    created = _vault_time(metadata.get("created_time"))
    return KVEntry(content if isinstance(content, dict) else None, version, created)


def _vault_time(value: object) -> datetime | None:
    """A KV v2 ``created_time`` (RFC 3339, nanoseconds); None when absent or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def _detail(e: hvac_errors.VaultError) -> str:
    errors = e.errors
    if isinstance(errors, str):
        text = errors
    elif errors:
        text = "; ".join(str(error) for error in errors)
    else:
        text = str(e.args[0]) if e.args and e.args[0] else type(e).__name__
    return scrub(text, 200)


def _no_route(e: hvac_errors.VaultError) -> bool:
    return isinstance(e, hvac_errors.InvalidPath) and "no handler for route" in _detail(e)
