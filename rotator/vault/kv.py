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

Every answer also tells Vault's time (``rotator.vault.clock``): its ``Date`` header and the
``created_time`` of the version written or read.

The ``rotator.vault`` package is the only part of rotator that imports hvac or requests; their
exceptions never leave it (``rotator.vault.translate`` turns each into one of
``rotator.vault.errors``). Messages name addresses, mounts and paths, never a token or a value.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

import hvac
import hvac.adapters
import hvac.exceptions as hvac_errors
import requests
import requests.exceptions
import tenacity

from rotator.backoff import full_jitter
from rotator.config import VaultSettings
from rotator.errors import RotatorError
from rotator.logs import get_logger
from rotator.redaction import SecretValue
from rotator.vault import deadline
from rotator.vault.auth import LoginSource, TokenKeeper, json_object
from rotator.vault.clock import SharedClock
from rotator.vault.errors import (
    CasConflict,
    VaultMountError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)
from rotator.vault.health import Health
from rotator.vault.metadata import Metadata
from rotator.vault.translate import (
    NEEDS,
    JSONAdapter,
    KVEntry,
    Observe,
    Translator,
    entry_of,
    http_date,
    no_route,
    relative,
    vault_time,
)

T = TypeVar("T")

#: Seconds: the first retry waits up to this long (full jitter), doubling up to ``MAX_BACKOFF``.
INITIAL_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 10.0

log = get_logger()


class Vault(Health, Metadata):
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
        self._translate = Translator(settings.address, settings.mount, observe)
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
            adapter=JSONAdapter,
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
        moment = http_date(response.headers.get("Date"))
        if moment is not None:
            self.clock.observe(moment, self._monotonic())

    # --- the operations -------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (otherwise done before the first operation)."""
        self._token.login("explicit")

    def read(self, path: str, version: int | None = None) -> KVEntry:
        """The latest version of ``path`` (relative to the mount), or the one named."""
        path = relative(path)

        def read() -> KVEntry:
            try:
                answer = self._client.secrets.kv.v2.read_secret_version(
                    path=path,
                    version=version,
                    mount_point=self._mount,
                    raise_on_deleted_version=False,
                )
            except hvac_errors.InvalidPath as e:
                # A deleted or destroyed latest version still answers with its metadata.
                if isinstance(e.json, dict) and isinstance(e.json.get("data"), dict):
                    return entry_of(e.json)
                if no_route(e):
                    raise
                return KVEntry(None, 0)
            return entry_of(answer)

        entry = self._call("read", path, read)
        if entry.created_time is not None:
            self.clock.observe(entry.created_time)
        return entry

    def write(self, path: str, data: Mapping[str, Any], *, cas: int) -> int:
        """Write ``data`` if the latest version is still ``cas`` (0: must not exist yet).

        Returns the new version; raises ``CasConflict`` when another writer was first.
        """
        path = relative(path)
        if cas < 0:
            raise ValueError("cas is 0 (must not exist yet) or the version that was read")
        # What Vault will hand back, so the read-back comparison compares like with like.
        payload = json.loads(json.dumps(dict(data)))

        def send() -> int:
            answer = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=payload, cas=cas, mount_point=self._mount
            )
            written = json_object(answer)["data"]
            created = vault_time(written.get("created_time"))
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
                self._sleep(full_jitter(sending, base=INITIAL_BACKOFF, cap=MAX_BACKOFF))
                log.warning("vault.resend", path=self._translate.where(path), attempt=sending + 1)
        where = self._translate.where(path)
        raise VaultUnavailable(
            f"Vault did not accept the write to {where} after {self._attempts} sends; nothing "
            "was written.",
            operation="write",
        )

    def read_value(self, path: str, key: str) -> SecretValue:
        """One key of a KV v2 secret, such as an Intercom token kept in Vault."""
        entry = self.read(path)
        where = self._translate.where(path)
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
            if authenticated and not self._mount_checked and operation in NEEDS:
                self._check_mount()
            try:
                if retry:
                    return self._retrying(operation, path, request)
                return self._translate.once(operation, path, request)
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
            stop=tenacity.stop_after_attempt(self._attempts) | deadline.stop,
            wait=lambda state: full_jitter(
                state.attempt_number, base=INITIAL_BACKOFF, cap=MAX_BACKOFF
            ),
            retry=tenacity.retry_if_exception_type(VaultUnavailable),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._translate.once(operation, path, request)
        except VaultUnavailable as e:
            deadline.gave_up(e, self._attempts)
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    # --- writes whose outcome is unknown ----------------------------------------------------

    def _settle(
        self, path: str, payload: dict[str, Any], cas: int, lost: VaultUnavailable
    ) -> int | None:
        """After a write with no answer: its version if it happened, None if it did not."""
        where = self._translate.where(path)
        try:
            entry = self.read(path)
        except VaultUnavailable as e:
            raise VaultUnavailable(
                f"The write to {where} may or may not have happened ({lost}), and reading it "
                f"back failed too ({e}). Re-read it before deciding again.",
                operation="write",
            ) from e
        if entry.version == cas + 1 and entry.data == payload:
            log.info("vault.write_confirmed", path=where, version=entry.version)
            return entry.version
        if entry.version == cas:
            return None
        raise CasConflict(
            f"{where} is at version {entry.version} with other data after our "
            f"write at cas {cas} lost its answer: another writer was first. Re-read it and "
            "decide again.",
            path=path,
        )

    def _check_mount(self) -> None:
        """Fail early and clearly when the mount is not KV v2 (the Vault CLI asks the same)."""
        try:
            info = self._translate.once(
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
            raise VaultMountError(
                f"{self._mount}/ on {self.settings.address} is {found}, not KV v2: check "
                "[vault] mount.",
                operation="check",
            )
