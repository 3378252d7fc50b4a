"""How every Intercom answer that is not a success becomes a rotator error: one table.

    status              error                        retried by the client?
    ------------------  ---------------------------  ------------------------------------------
    401                 IntercomAuthError            no (permanent: fix the token)
    403                 IntercomPermissionError      no (permanent: grant .scope)
    404 on DELETE       - (DeleteOutcome.ALREADY_DELETED, a success for the caller)
    404 otherwise       IntercomRequestError         no (permanent: base_url or path is wrong)
    422                 IntercomValidationError      no (permanent: carries Intercom's message)
    429                 IntercomRateLimited          yes, after Retry-After / X-RateLimit-Reset
    5xx                 IntercomUnavailable          yes for GET and DELETE, exponential backoff
                                                     with jitter; POST -> CreateOutcomeUnknown
    transport error     IntercomUnavailable          yes for GET and DELETE; POST only when the
                                                     request never left (connect failed), else
                                                     CreateOutcomeUnknown
    other 3xx/4xx       IntercomRequestError         no (permanent)
    unreadable answer   IntercomProtocolError        no (permanent: not the contract's shape)

Every error carries Intercom's ``request_id`` (from the error body, else the ``X-Request-Id``
header) so a support ticket can quote it, and the operation (``list``, ``create``, ``delete``).
Quoted messages are truncated and redacted first (``rotator.redaction.scrub``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from rotator.errors import OutcomeUnknownError, PermanentError, RotatorError, TemporaryError
from rotator.intercom.models import READ_SCOPE, WRITE_SCOPE
from rotator.redaction import scrub

if TYPE_CHECKING:
    import httpx

#: What rotator asks of Intercom.
Operation = Literal["list", "create", "delete"]
#: The scope each operation needs, named in permission errors.
SCOPE_FOR_OPERATION = {"list": READ_SCOPE, "create": WRITE_SCOPE, "delete": WRITE_SCOPE}


class IntercomAuthError(PermanentError):
    """401: the access token is missing, invalid or revoked."""


class IntercomPermissionError(PermanentError):
    """403: the token is valid but lacks ``scope``."""

    def __init__(
        self,
        message: str,
        *,
        scope: str,
        request_id: str | None = None,
        status: int | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id, status=status, operation=operation)
        self.scope = scope


class IntercomValidationError(PermanentError):
    """422: Intercom rejected the parameters; ``message`` carries its explanation."""


class IntercomRequestError(PermanentError):
    """Another 3xx/4xx answer: usually a wrong ``base_url``."""


class IntercomProtocolError(PermanentError):
    """A success answer that does not follow the contract."""


class IntercomRateLimited(TemporaryError):
    """429, still, after the client's bounded retries; ``delay`` says when to try again."""


class IntercomUnavailable(TemporaryError):
    """5xx or a transport error, still, after the client's bounded retries."""


class CreateOutcomeUnknown(OutcomeUnknownError):
    """A create request was sent and its answer lost: list the secrets before anything else."""


def error_for_status(
    status: int,
    operation: str,
    *,
    code: str | None,
    detail: str,
    request_id: str | None,
    delay: float | None = None,
) -> RotatorError:
    """The error for an unsuccessful ``status`` answered to ``operation`` (see the table)."""
    where: dict[str, Any] = {"request_id": request_id, "status": status, "operation": operation}
    what = f"{status} {code}: {detail}" if code else f"{status}: {detail}"
    if status == 401:
        return IntercomAuthError(
            f"Intercom rejected the access token ({what}). Check that the token is current and "
            "belongs to this workspace.",
            **where,
        )
    if status == 403:
        scope = SCOPE_FOR_OPERATION.get(operation, f"{READ_SCOPE} and {WRITE_SCOPE}")
        return IntercomPermissionError(
            f"The Intercom token lacks the scope {scope!r} needed to {operation} secrets "
            f"({what}). Grant it in the Developer Hub app's authentication settings.",
            scope=scope,
            **where,
        )
    if status == 422:
        return IntercomValidationError(f"Intercom refused the {operation} ({what}).", **where)
    if status == 429:
        return IntercomRateLimited(
            f"Intercom rate limit exceeded on {operation} ({what}).", delay=delay, **where
        )
    if status >= 500:
        return IntercomUnavailable(
            f"Intercom failed to {operation} secrets ({what}).", delay=delay, **where
        )
    return IntercomRequestError(
        f"Intercom answered {operation} with {what}. Check base_url/region.", **where
    )


# --- reading an error answer ---------------------------------------------------------------


def protocol_error(
    operation: Operation, response: httpx.Response, e: Exception
) -> IntercomProtocolError:
    """An answer that does not follow the contract (a body of the wrong shape)."""
    return IntercomProtocolError(
        f"Intercom's answer to {operation} does not follow the contract ({scrub(str(e))}).",
        request_id=request_id(response, None),
        status=response.status_code,
        operation=operation,
    )


def json_or_none(response: httpx.Response) -> Any:
    """The answer's JSON body, or None when it has none."""
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def error_code(response: httpx.Response) -> str | None:
    """The ``code`` of an ``error.list`` body (``identity_verification_secret_not_found``)."""
    return error_detail(response)[0]


def error_detail(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from an ``error.list`` body, else a scrubbed excerpt of the body."""
    body = json_or_none(response)
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            code = first.get("code")
            message = first.get("message")
            return (
                scrub(str(code), 80) if code is not None else None,
                scrub(str(message)) if message else response.reason_phrase,
            )
    text = response.text.strip()
    return None, scrub(text, 200) if text else response.reason_phrase


def request_id(response: httpx.Response, body: Any) -> str | None:
    """Intercom's ``request_id`` for a support ticket: the body's, else the header's."""
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        return scrub(body["request_id"], 80)
    header = response.headers.get("X-Request-Id")
    return scrub(header, 80) if header else None
