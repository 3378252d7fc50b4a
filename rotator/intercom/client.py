"""The Intercom identity-verification-secret client: list, create, delete.

Theory of operation
-------------------
Each public method sends one logical request; ``_send`` makes bounded attempts at it under a
tenacity loop whose sleep and clock are injected. Whether an attempt may be repeated depends on
the operation, never on luck:

* GET (list) and DELETE are idempotent: 429, 5xx and transport errors are retried.
  DELETE answered 404 means an earlier attempt, or someone else, already deleted it: success.
* POST (create) is not: Intercom has no idempotency key, and a created secret's material is
  returned only in that one answer. A POST is repeated only when it provably never reached
  Intercom (the connection could not be opened) or was refused with 429. Any other failure after
  sending (timeout, dropped connection, 5xx, an unreadable 2xx) raises ``CreateOutcomeUnknown``:
  the caller lists the secrets and looks for the unique name it sent.

httpx exceptions never leave this module; see ``rotator.intercom.errors`` for the table.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Final, Self
from urllib.parse import quote

import httpx
import tenacity

from rotator.backoff import full_jitter
from rotator.core.endpoints import resolve_base_url
from rotator.errors import LocalError, RotatorError, transport_cause
from rotator.intercom.errors import (
    CreateOutcomeUnknown,
    IntercomRequestError,
    IntercomUnavailable,
    Operation,
    error_code,
    error_detail,
    error_for_status,
    json_or_none,
    protocol_error,
    request_id,
)
from rotator.intercom.models import (
    CreatedSecret,
    DeleteOutcome,
    Platforms,
    SecretInfo,
    parse_secret_list,
)
from rotator.intercom.pacing import Budget
from rotator.intercom.ratelimit import LONGEST_WAIT, server_delay
from rotator.intercom.sessions import new_session
from rotator.logs import get_logger
from rotator.redaction import SecretValue, hide_userinfo, scrub

DEFAULT_VERSION: Final = "Preview"
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=5.0, read=30.0, write=10.0, pool=5.0)
SECRETS_PATH: Final = "/secure_mode_secrets"

#: ``(operation, status, seconds)`` for one HTTP attempt; status is the HTTP status as text, or
#: "error" when no answer came back.
Observe = Callable[[str, str, float], None]

# Failures that happen before any byte of the request reaches the server: even a POST may be
# repeated after them.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)
# Failures that mean the request can never work as configured.
_MISCONFIGURED: Final = (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError)
# Everything httpx raises; caught so that none of it escapes this module.
_HTTPX_ERRORS: Final = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, httpx.CookieConflict)
#: What a header value may hold here: printable ASCII (a token or a version never needs more).
_HEADER_SAFE: Final = re.compile(r"[ -~]+")
_DELETE_NOT_FOUND_CODES: Final = frozenset({"identity_verification_secret_not_found", "not_found"})

log = get_logger()
#: Backoff jitter for clients not given their own: one generator (2.5 KB of state) for all of
#: them rather than one per target; its methods are safe to share between threads.
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client repeats requests that are safe to repeat."""

    #: Attempts in all, the first included.
    attempts: int = 4
    #: Seconds before the first retry; doubles each time, with full jitter.
    initial_backoff: float = 0.5
    #: Seconds; the longest single wait between attempts.
    max_backoff: float = 10.0
    #: Seconds; a longer ``Retry-After`` is not waited out here but returned to the caller as
    #: ``IntercomRateLimited.delay`` (at most a day: ``ratelimit.LONGEST_WAIT``), so one busy
    #: workspace does not stall a whole pass.
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.initial_backoff, self.max_backoff, self.max_retry_after) < 0:
            raise ValueError("backoff durations must not be negative")


class _Retryable(Exception):
    """An attempt failed in a way that may be repeated; ``error`` is raised if none is left."""

    def __init__(self, error: RotatorError, delay: float | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.delay = delay


class _BearerAuth(httpx.Auth):
    """Adds the token at send time, so it is never stored in a header map we could log."""

    def __init__(self, token: SecretValue) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        yield request


class IntercomClient:
    """A client for ``/secure_mode_secrets`` on one Intercom workspace."""

    def __init__(
        self,
        token: str | SecretValue,
        *,
        region: str = "us",
        base_url: str | None = None,
        version: str = DEFAULT_VERSION,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        observe: Observe | None = None,
        budget: Budget | None = None,
        session: Callable[[], httpx.Client] | None = None,
    ) -> None:
        """``observe`` hears of every HTTP attempt (for metrics): never a token or material.
        ``budget`` paces every attempt under the app's rate limit (``rotator.intercom.pacing``);
        clients of targets sharing an app share it. ``session`` gives the connection pool of
        ``base_url`` (``rotator.intercom.sessions``) when clients share one; it is not closed
        here, and ``timeout`` and ``transport`` are then the session's. Either way the pool is
        got (or made) by the first request: making one imports httpcore and may load the CA
        bundle, which a pass that never calls Intercom does not need."""
        self.base_url = resolve_base_url(region, base_url)
        #: How messages and logs name it: never with a user and password in it.
        self.shown_url = hide_userinfo(self.base_url)
        self._observe = observe
        self._budget = budget
        self.version = version
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or _JITTER
        secret = token if isinstance(token, SecretValue) else SecretValue(token)
        # httpx would send a non-ASCII letter in the token as UTF-8 (refused as a wrong token),
        # fail here with its own error for one in the version, and refuse a newline only at
        # send time; whitespace around a value is refused at send time (`_attempt`).
        if not all(_HEADER_SAFE.fullmatch(value) for value in (secret.reveal(), version)):
            raise self._unsendable("make requests")
        self._auth = _BearerAuth(secret)
        #: What is this target's own goes with each request: the session may be shared.
        self._headers = {"Intercom-Version": version}
        self._owns_session = session is None
        self._session = session or (lambda: new_session(self.base_url, timeout, transport))
        self._http: httpx.Client | None = None
        self._closed = False
        self._http_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IntercomClient(base_url={self.shown_url!r}, version={self.version!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._http_lock:
            self._closed = True
            if self._owns_session and self._http is not None:
                self._http.close()

    def _connection(self) -> httpx.Client:
        """The connection pool, got on first use; threads share it. Once ``close`` was called,
        a request fails as it would on a closed httpx client."""
        if not self._owns_session:
            return self._session()  # shared: asked each time (reopened if it was closed)
        with self._http_lock:
            if self._http is None:
                self._http = self._session()
                if self._closed:
                    self._http.close()
            return self._http

    # --- the three operations -------------------------------------------------------------

    def list_secrets(self) -> list[SecretInfo]:
        """Every live identity verification secret of the workspace (metadata only)."""
        response = self._send("list", "GET", SECRETS_PATH)
        try:
            return parse_secret_list(response.json())
        except ValueError as e:
            raise protocol_error("list", response, e) from e

    def create_secret(self, name: str, platforms: Platforms) -> CreatedSecret:
        """Create a secret named ``name``; its material is in the result, and nowhere else.

        Raises ``CreateOutcomeUnknown`` when the secret may have been created but its answer
        was lost: list the secrets and look for ``name`` before creating another.
        """
        body = {"name": name, **platforms.as_request()}
        response = self._send("create", "POST", SECRETS_PATH, body=body)
        try:
            return CreatedSecret.from_api(response.json())
        except ValueError as e:
            # Intercom said yes but we cannot read the material: the secret exists, unusable.
            raise CreateOutcomeUnknown(
                f"Intercom created a secret but its answer could not be read ({e}); "
                "list the secrets to find it by name.",
                request_id=request_id(response, None),
                status=response.status_code,
                operation="create",
            ) from e

    def delete_secret(self, secret_id: str) -> DeleteOutcome:
        """Delete (soft-delete) ``secret_id``; a secret already gone counts as deleted."""
        if not secret_id:
            raise ValueError("secret_id must not be empty")
        # Ids are opaque strings: escape anything that is not safe in one path segment.
        path = f"{SECRETS_PATH}/{quote(secret_id, safe='')}"
        response = self._send("delete", "DELETE", path, allow_404=True)
        if response.status_code == 404:
            return DeleteOutcome.ALREADY_DELETED
        return DeleteOutcome.DELETED

    # --- sending, retrying, classifying ---------------------------------------------------

    def _send(
        self,
        operation: Operation,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        allow_404: bool = False,
    ) -> httpx.Response:
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self._retry.attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(operation, method, path, body, allow_404=allow_404)
        except _Retryable as e:
            e.error.message += f" Gave up after {self._retry.attempts} attempts."
            raise e.error from e.__cause__
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def _attempt(
        self,
        operation: Operation,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        allow_404: bool,
    ) -> httpx.Response:
        self._pace()
        started = time.monotonic()
        try:
            response = self._connection().request(
                method, path, json=body, auth=self._auth, headers=self._headers
            )
        except _HTTPX_ERRORS as e:
            self._observed(operation, "error", started)
            if isinstance(e, httpx.LocalProtocolError) and "header" in str(e).lower():
                raise self._unsendable(f"send the {operation} request") from e
            raise self._transport_failure(operation, e) from e
        self._observed(operation, str(response.status_code), started)
        self._paced(response)
        log.debug(
            "intercom.request",
            operation=operation,
            method=method,
            path=path,
            status=response.status_code,
            request_id=request_id(response, None),
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        status = response.status_code
        if 200 <= status < 300:
            return response
        if status == 404 and allow_404 and error_code(response) in _DELETE_NOT_FOUND_CODES:
            return response
        error = self._status_error(operation, response)
        if status == 429:
            delay = self._server_delay(response)
            if delay is not None and delay > self._retry.max_retry_after:
                raise error  # the caller reschedules; we do not block that long
            raise _Retryable(error, delay)
        if status >= 500:
            if operation == "create":
                raise CreateOutcomeUnknown(
                    f"Intercom answered the create with {status}; the secret may or may not "
                    "exist. List the secrets to find it by name.",
                    request_id=error.request_id,
                    status=status,
                    operation=operation,
                )
            raise _Retryable(error, None)
        raise error

    def _pace(self) -> None:
        """Wait for this attempt's turn in the app's budget (every attempt counts)."""
        if self._budget is not None:
            self._budget.acquire()

    def _paced(self, response: httpx.Response) -> None:
        """Let the budget hear what the server said of the app's rate limit."""
        if self._budget is not None:
            self._budget.note(response.status_code, response.headers)

    def _observed(self, operation: Operation, status: str, started: float) -> None:
        if self._observe is None:
            return
        try:
            self._observe(operation, status, time.monotonic() - started)
        except Exception:  # a metrics bug must never cost a request
            log.exception("intercom.observe_failed", operation=operation)

    def _unsendable(self, what: str) -> LocalError:
        """A header value HTTP does not allow (the token or ``intercom_version`` with a newline or
        a non-ASCII letter) stops every request before it leaves: this process's configuration is
        wrong, not the network nor Intercom, so it must not block the shared record. The value is
        not quoted: it may be the token."""
        return LocalError(
            f"Cannot {what} to {self.shown_url}: a header value holds what HTTP does not allow "
            "(whitespace around it, a newline, a control character or a non-ASCII letter). "
            "Check the Intercom token and intercom_version."
        )

    def _transport_failure(self, operation: Operation, e: Exception) -> Exception:
        detail = scrub(transport_cause(e))
        if isinstance(e, _MISCONFIGURED):
            return IntercomRequestError(
                f"Cannot send the {operation} request to {self.shown_url} ({detail}). "
                "Check base_url/region.",
                operation=operation,
            )
        unavailable = IntercomUnavailable(
            f"Could not {operation} secrets at {self.shown_url} ({detail}).", operation=operation
        )
        if operation == "create" and not isinstance(e, _NOT_SENT):
            return CreateOutcomeUnknown(
                f"The create request was sent to {self.shown_url} but no answer came back "
                f"({detail}); the secret may or may not exist. List the secrets to find it by "
                "name.",
                operation=operation,
            )
        return _Retryable(unavailable, None)

    def _status_error(self, operation: Operation, response: httpx.Response) -> RotatorError:
        code, detail = error_detail(response)
        return error_for_status(
            response.status_code,
            operation,
            code=code,
            detail=detail,
            request_id=request_id(response, json_or_none(response)),
            delay=self._server_delay(response),
        )

    def _server_delay(self, response: httpx.Response) -> float | None:
        """Seconds the server asked us to wait, parsed strictly and at most a day."""
        return server_delay(response.headers, now=self._clock(), cap=LONGEST_WAIT)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, _Retryable) and error.delay is not None:
            return min(error.delay, self._retry.max_retry_after)
        return full_jitter(
            state.attempt_number,
            base=self._retry.initial_backoff,
            cap=self._retry.max_backoff,
            rng=self._rng,
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "intercom.retry",
            attempt=state.attempt_number,
            of=self._retry.attempts,
            wait_s=round(state.upcoming_sleep, 3),
            reason=str(error.error) if isinstance(error, _Retryable) else repr(error),
        )
