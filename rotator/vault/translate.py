"""What hvac and requests say, in rotator's words: every exception they raise becomes one of
``rotator.vault.errors`` (wrapped ``from`` the original), naming the address, mount, path and the
capability a policy lacks, never a token or a value. Also the JSON adapter that counts any 5xx as
a server error, and the per-request observer hook (metrics).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import hvac.adapters
import hvac.exceptions as hvac_errors
import requests
import requests.exceptions

from rotator.errors import RotatorError, transport_cause
from rotator.logs import get_logger
from rotator.redaction import scrub
from rotator.vault import deadline
from rotator.vault.auth import json_object
from rotator.vault.errors import (
    CasConflict,
    VaultAuthError,
    VaultMountError,
    VaultPermissionError,
    VaultRequestError,
    VaultUnavailable,
)

T = TypeVar("T")

log = get_logger()

#: ``(operation, status, seconds)`` for one request to Vault; status is the HTTP status as text,
#: or "error" when no answer came back.
Observe = Callable[[str, str, float], None]

# The HTTP status of the latest answer the adapter received, per thread: hvac hands the caller
# a dict or an exception, not the status, and a read's 404 is folded into an empty entry.
_answer = threading.local()

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
NEEDS: Final = {
    "read": ("data", "read"),
    "write": ("data", "create and update"),
    "list": ("metadata", "list"),
    "read_metadata": ("metadata", "read"),
    "require_cas": ("metadata", "create and update"),
    "delete_metadata": ("metadata", "delete"),
}


class JSONAdapter(hvac.adapters.JSONAdapter):
    """hvac's JSON adapter, except that any 5xx hvac has no class for (a proxy's 504) counts as
    a server error rather than an ``UnexpectedError``, so that it is retried; and that a request
    sent within a ``rotator.vault.deadline`` bound waits no longer than the time it has left."""

    def request(self, *args: Any, **kwargs: Any) -> requests.Response | dict[Any, Any]:
        wants_errors = kwargs.pop("raise_exception", True) and not self.ignore_exceptions
        configured = getattr(self, "_kwargs", {}).get("timeout") or 30.0  # hvac's Client(timeout)
        kwargs["timeout"] = deadline.request_timeout(configured)
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


@dataclass(frozen=True, slots=True)
class Translator:
    """Runs one request and turns whatever the libraries raise into rotator's errors."""

    address: str
    mount: str
    observe: Observe | None = None

    def once(self, operation: str, path: str, request: Callable[[], T]) -> T:
        try:
            if self.observe is None:
                return request()
            return _observed(self.observe, operation, request)
        except RotatorError:
            raise
        except hvac_errors.VaultError as e:
            raise self.refusal(operation, path, e) from e
        # Some requests exceptions are ValueErrors too (InvalidURL): only this one is an answer.
        except requests.exceptions.JSONDecodeError as e:
            raise self.bad_answer(operation, path, e) from e
        except requests.exceptions.RequestException as e:
            raise self.transport_failure(operation, path, e) from e
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise self.bad_answer(operation, path, e) from e
        # The promise of this module: nothing else escapes it, whatever the libraries raise.
        except Exception as e:
            raise VaultRequestError(
                f"Unexpected {type(e).__name__} during {self.subject(operation, path)}: "
                f"{scrub(str(e))}",
                operation=operation,
            ) from e

    def bad_answer(self, operation: str, path: str, e: Exception) -> VaultRequestError:
        return VaultRequestError(
            f"The answer to {self.subject(operation, path)} is not what Vault sends "
            f"({type(e).__name__}); is {self.address} a Vault server?",
            operation=operation,
        )

    def refusal(self, operation: str, path: str, e: hvac_errors.VaultError) -> RotatorError:
        status = _STATUS.get(type(e))
        detail = _detail(e)
        subject = self.subject(operation, path)
        if isinstance(e, hvac_errors.Forbidden):
            api, capability = NEEDS.get(operation, ("", ""))
            grant = (
                f" The token's policy needs {capability} on {self.mount}/{api}/{path}."
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
                f"{self.where(path)} changed since the version given as cas was read ({detail}): "
                "another writer was first. Re-read it and decide again.",
                path=path,
            )
        if no_route(e) and operation in NEEDS:
            return VaultMountError(
                f"Nothing is mounted at {self.mount}/ on {self.address} ({detail}): "
                "check [vault] mount (a KV v2 secrets engine) and namespace.",
                status=status,
                operation=operation,
            )
        if isinstance(e, _TRANSIENT_VAULT):
            return VaultUnavailable(
                f"Vault at {self.address} could not serve {subject} ({status}: {detail}).",
                status=status,
                operation=operation,
            )
        return VaultRequestError(
            f"Vault refused {subject} ({status or 'unexpected answer'}: {detail}).",
            status=status,
            operation=operation,
        )

    def transport_failure(
        self, operation: str, path: str, e: requests.exceptions.RequestException
    ) -> RotatorError:
        detail = scrub(transport_cause(e))
        where = self.subject(operation, path)
        if isinstance(e, requests.exceptions.SSLError):
            return VaultRequestError(
                f"TLS with {self.address} failed during {where} ({detail}): check "
                "[vault] address, ca_cert and tls_verify.",
                operation=operation,
            )
        if isinstance(e, _TRANSIENT_TRANSPORT):
            return VaultUnavailable(
                f"Could not reach Vault at {self.address} for {where} ({detail}): is it "
                "running, and is [vault] address right?",
                operation=operation,
            )
        return VaultRequestError(
            f"Cannot send {where} to {self.address} ({detail}): check [vault] address.",
            operation=operation,
        )

    def where(self, path: str) -> str:
        return f"{self.mount}/{path.strip('/')}"

    def subject(self, operation: str, path: str) -> str:
        """``read of secret/x`` for an operation on a path, ``login`` for the others."""
        return f"{operation} of {self.where(path)}" if operation in NEEDS else operation


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


def _detail(e: hvac_errors.VaultError) -> str:
    errors = e.errors
    if isinstance(errors, str):
        text = errors
    elif errors:
        text = "; ".join(str(error) for error in errors)
    else:
        text = str(e.args[0]) if e.args and e.args[0] else type(e).__name__
    return scrub(text, 200)


def no_route(e: hvac_errors.VaultError) -> bool:
    return isinstance(e, hvac_errors.InvalidPath) and "no handler for route" in _detail(e)


# --- what Vault answered ---------------------------------------------------------------


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


def entry_of(answer: object) -> KVEntry:
    data = json_object(answer)["data"]
    metadata = data["metadata"]
    version = int(metadata["version"])
    content = data.get("data")
    created = vault_time(metadata.get("created_time"))
    return KVEntry(content if isinstance(content, dict) else None, version, created)


def vault_time(value: object) -> datetime | None:
    """A KV v2 ``created_time`` (RFC 3339, nanoseconds); None when absent or not a time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def relative(path: str) -> str:
    """A path under the mount, without its slashes; empty is refused."""
    path = path.strip("/")
    if not path:
        raise ValueError("a path under the mount is required")
    return path


class Mixed:
    """What a part mixed into ``rotator.vault.Vault`` (``Health``, ``Metadata``) works through:
    its hvac client, its mount and its ``_call``."""

    _client: hvac.Client
    _mount: str

    if TYPE_CHECKING:  # ``Vault._call``: the request run with its token, retries and re-login

        def _call(
            self,
            operation: str,
            path: str,
            request: Callable[[], T],
            *,
            retry: bool = True,
            authenticated: bool = True,
        ) -> T: ...
