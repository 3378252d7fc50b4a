"""The emulator's HTTP interface: Intercom's ``/secure_mode_secrets`` API as a WSGI app.

It follows the contract in ``shared/contracts/intercom-secure-mode-secrets.openapi.yaml``:
bearer auth with scopes, ``201``/``204``/``401``/``403``/``404``/``422`` answers, ``error.list``
bodies with a ``request_id``, string ids, soft delete, and Intercom's documented rate limit
(``rotator.emulator.limits``: 429 beyond 10,000 calls a minute per app, counted in 10-second
windows, ``X-RateLimit-*`` on every authenticated answer). Order of checks for an API request:
authentication (401; the call is then counted against the rate limit), ``Intercom-Version``
(400), scope (403), injected latency, the rate limit (429), injected 429 and 5xx, then the
operation itself (422 on bad parameters; ``post_drop`` after a create).

Test-only endpoints live under ``/__``: ``GET /__verify?user_id=&user_hash=[&platform=]`` or
``GET /__verify?jwt=[&user_id=][&platform=]`` checks a ``user_hash`` or a Messenger JWT against the
live secrets as Messenger would, and ``GET /__health``.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from rotator.emulator.faults import Faults
from rotator.emulator.limits import RateLimit, RateWindows, Verdict
from rotator.emulator.state import DEFAULT_WORKSPACE, READ_SCOPE, WRITE_SCOPE, Store, Token
from rotator.logs import get_logger

# The contract's ``intercom_version`` enum.
VERSIONS = frozenset(["1.0", "1.1", "1.2", "1.3", "1.4", *(f"2.{n}" for n in range(17)), "Preview"])
MAX_NAME_LENGTH = 255  # not in the contract; a bound so a runaway client gets a 422
PLATFORM_FLAGS = ("supports_web", "supports_ios", "supports_android")

log = get_logger()

_ROUTES = Map(
    [
        Rule("/secure_mode_secrets", methods=["GET"], endpoint="list"),
        Rule("/secure_mode_secrets", methods=["POST"], endpoint="create"),
        Rule("/secure_mode_secrets/<secret_id>", methods=["DELETE"], endpoint="delete"),
        Rule("/__verify", methods=["GET"], endpoint="verify"),
        Rule("/__health", methods=["GET"], endpoint="health"),
    ],
    strict_slashes=False,
)
_SCOPES = {"list": READ_SCOPE, "create": WRITE_SCOPE, "delete": WRITE_SCOPE}


class DropConnection(ConnectionError):
    """Raised to end a request with no answer at all; the server closes the socket."""


class _Answer(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class EmulatorApp:
    """WSGI application serving one emulated Intercom (many workspaces, by token)."""

    def __init__(
        self,
        store: Store,
        tokens: Iterable[Token],
        faults: Faults,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rate_limit: RateLimit | None = None,
    ) -> None:
        """``rate_limit`` defaults to Intercom's documented one, enforced."""
        self.store = store
        self.faults = faults
        self.tokens: dict[str, Token] = {t.value: t for t in tokens}
        self._clock = clock
        self._sleep = sleep
        self.rates = RateWindows(rate_limit or RateLimit(), clock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = 64 * 1024
        request_id = str(uuid.uuid4())
        try:
            response = self._dispatch(request, request_id)
        except _Answer as answer:
            response = answer.response
        except DropConnection:
            log.info("emulator.post_drop", request_id=request_id)
            _shut(environ)
            raise
        response.headers["X-Request-Id"] = request_id
        log.debug(
            "emulator.request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            request_id=request_id,
        )
        return response(environ, start_response)

    def _dispatch(self, request: Request, request_id: str) -> Response:
        adapter = _ROUTES.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except MethodNotAllowed as e:
            return _error(405, "method_not_allowed", "Method not allowed", request_id, e)
        except NotFound:
            return _error(404, "not_found", "Resource Not Found", request_id)
        except HTTPException as e:  # pragma: no cover - routing raises only the two above
            return _error(e.code or 400, "bad_request", e.description or "", request_id)
        if endpoint == "health":
            return _json(200, {"ok": True})
        if endpoint == "verify":
            return self._verify(request)
        token = self._authenticate(request, request_id)
        verdict = self.rates.count(token.rate_key, token.workspace)
        headers = verdict.headers()
        self._check_version(request, request_id)
        if _SCOPES[endpoint] not in token.scopes:
            raise _Answer(_error(403, "forbidden", _scope_message(endpoint), request_id))
        self._inject(request_id, verdict)
        if endpoint == "list":
            response = self._list(token)
        elif endpoint == "create":
            response = self._create(request, token, request_id)
        else:
            response = self._delete(token, args["secret_id"], request_id)
        response.headers.extend(headers)
        return response

    # --- the operations ---------------------------------------------------------------------

    def _list(self, token: Token) -> Response:
        listed = self.store.live_ago(token.workspace, self.faults.list_lag())
        data = [s.public() for s in listed]
        return _json(200, {"type": "list", "data": data})

    def _create(self, request: Request, token: Token, request_id: str) -> Response:
        params = _create_params(request, request_id)
        created = self.store.create(token.workspace, **params)
        if self.faults.roll_post_drop():
            raise DropConnection(created.id)
        return _json(201, created.with_material())

    def _delete(self, token: Token, secret_id: str, request_id: str) -> Response:
        if not self.store.delete(token.workspace, secret_id):
            return _error(
                404,
                "identity_verification_secret_not_found",
                "Identity verification secret not found",
                request_id,
            )
        return Response(status=204)

    def _verify(self, request: Request) -> Response:
        user_id = request.args.get("user_id", "")
        claimed = request.args.get("user_hash", "")
        token = request.args.get("jwt", "")
        platform = request.args.get("platform") or None
        problem = _verify_problem(user_id, claimed, token, platform)
        if problem is not None:
            return _json(400, {"error": problem})
        workspace = request.args.get("workspace") or DEFAULT_WORKSPACE
        bearer = _bearer(request)
        if bearer is not None and bearer in self.tokens:
            workspace = self.tokens[bearer].workspace
        if token:
            valid = self.store.verify_jwt(
                workspace, token, user_id=user_id or None, platform=platform
            )
        else:
            valid = self.store.verify(workspace, user_id, claimed, platform)
        return _json(200, {"valid": valid})

    # --- checks and faults ------------------------------------------------------------------

    def _authenticate(self, request: Request, request_id: str) -> Token:
        bearer = _bearer(request)
        token = self.tokens.get(bearer) if bearer is not None else None
        if token is None:
            raise _Answer(_error(401, "unauthorized", "Access Token Invalid", request_id))
        return token

    def _check_version(self, request: Request, request_id: str) -> None:
        version = request.headers.get("Intercom-Version")
        if version is not None and version not in VERSIONS:
            raise _Answer(
                _error(400, "intercom_version_invalid", "Requested version is invalid", request_id)
            )

    def _inject(self, request_id: str, verdict: Verdict) -> None:
        spec = self.faults.spec
        headers = verdict.headers()
        if self.faults.roll(spec.latency):
            self._sleep(spec.latency_seconds)
        if verdict.refused:
            response = _error(429, "rate_limit_exceeded", verdict.message(), request_id)
            response.headers.extend(headers)
            raise _Answer(response)
        if self.faults.roll(spec.rate_limit):
            wait = max(1, math.ceil(spec.retry_after))
            response = _error(429, "rate_limit_exceeded", "Rate Limit Exceeded", request_id)
            response.headers["Retry-After"] = str(wait)
            response.headers.extend(
                (k, v)
                for k, v in headers
                if k not in {"X-RateLimit-Remaining", "X-RateLimit-Reset"}
            )
            response.headers["X-RateLimit-Remaining"] = "0"
            response.headers["X-RateLimit-Reset"] = str(int(self._clock()) + wait)
            raise _Answer(response)
        if self.faults.roll(spec.server_error):
            status = self.faults.server_status()
            raise _Answer(_error(status, "server_error", "Server Error", request_id))


def _create_params(request: Request, request_id: str) -> dict[str, Any]:
    def invalid(message: str) -> _Answer:
        return _Answer(_error(422, "parameter_invalid", message, request_id))

    try:
        body = json.loads(request.get_data(cache=False) or b"null")
    except ValueError:
        raise invalid("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    name = body.get("name")
    if name is None:
        raise invalid("name is required")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise invalid(f"name must be at most {MAX_NAME_LENGTH} characters")
    flags = {}
    for flag in PLATFORM_FLAGS:
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise invalid(f"{flag} must be a boolean")
        flags[flag] = value
    if not any(flags.values()):
        raise invalid("At least one of supports_web, supports_ios or supports_android must be true")
    return {
        "name": name,
        "web": flags["supports_web"],
        "ios": flags["supports_ios"],
        "android": flags["supports_android"],
    }


def _verify_problem(user_id: str, claimed: str, token: str, platform: str | None) -> str | None:
    """Why a ``/__verify`` query cannot be answered, or ``None``: exactly one of ``user_hash``
    (with ``user_id``) or ``jwt`` (``user_id`` optional, checked against its claim)."""
    usage = (
        "give user_id and user_hash, or jwt (and optionally user_id, which must match its "
        "user_id claim); optionally platform=web|ios|android"
    )
    if claimed and token:
        return f"give user_hash or jwt, not both: {usage}"
    if not token and (not user_id or not claimed):
        return usage
    if platform not in {None, "web", "ios", "android"}:
        return f"unknown platform {platform!r}: {usage}"
    return None


def _scope_message(endpoint: str) -> str:
    return f"The access token lacks the {_SCOPES[endpoint]} scope required for this request"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    return Response(
        json.dumps(payload), status=status, content_type="application/json; charset=utf-8"
    )


def _error(
    status: int,
    code: str,
    message: str,
    request_id: str,
    allowed: MethodNotAllowed | None = None,
) -> Response:
    response = _json(
        status,
        {
            "type": "error.list",
            "request_id": request_id,
            "errors": [{"code": code, "message": message}],
        },
    )
    if allowed is not None and allowed.valid_methods:
        response.headers["Allow"] = ", ".join(allowed.valid_methods)
    return response


def _shut(environ: Mapping[str, Any]) -> None:
    """Close the client's connection at once, so it sees a drop, not a slow answer."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
