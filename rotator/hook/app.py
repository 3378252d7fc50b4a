"""The daemon's HTTP routes: the rollout-confirmation hook, liveness, readiness and metrics.

* ``POST /v1/targets/{name}/confirm``, body ``{"secret_id": ...}`` and/or ``{"rotation_id": ...}``:
  the consumers of ``name`` picked up the new secret. Checks, in order: hook configured (503),
  credentials (401, ``rotator.hook.auth``; a token before the body is read, a signature after),
  body size (413, never read past the limit), JSON shape (400), then the ``confirm`` callback:
  200, 403, 404 or 409 by its outcome; 503 if it raises a ``TemporaryError``, which releases the
  signature so the sender may retry the very same request.
* ``GET /healthz`` (liveness), ``GET /readyz`` (``ready()`` decides), ``GET /metrics`` (the
  injected WSGI app, if any). Everything else, and every failure, is ``{"error": {code, message}}``.

At most ``hook_concurrency`` confirmations run their callback at once (it may wait on Vault):
one more is answered 503 ``temporarily_unavailable`` with Retry-After at once, so the server's
other workers stay free and liveness never waits behind the hook. ``ready()`` must answer at
once too (the daemon's reads a state checked in the background).

Only ids and target names reach answers and logs (``hook.confirm``, ``hook.rejected``): never a
credential, a signature or a body. ``rotator.hook.server`` runs the app.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from rotator.config import ServerSettings
from rotator.core.confirmation import ConfirmStatus
from rotator.core.names import valid_secret_id, valid_target_name
from rotator.errors import LocalError, RotatorError, TemporaryError
from rotator.hook.auth import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HookAuthenticator,
    Rejected,
)
from rotator.hook.auth import (
    HookCredentials as HookCredentials,  # noqa: PLC0414 - re-exported: part of this module's API
)
from rotator.logs import get_logger
from rotator.redaction import scrub, truncate

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: Confirmations whose callback may run at once: half of ``rotator.hook.server.THREADS``.
HOOK_CONCURRENCY = 4
#: Seconds a refused or failed confirmation is told to wait when the failure names no delay.
RETRY_AFTER = 5.0


log = get_logger()


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """An authenticated confirmation; ``via`` is ``"bearer"`` or ``"hmac"`` (audit trail)."""

    secret_id: str | None
    rotation_id: str | None
    via: str
    #: A signed call's timestamp (unix seconds, the sender's clock); None for a bearer token.
    signed_at: float | None = None
    #: The named consumer confirming (``{"consumer": "billing"}``), for targets that name them.
    consumer: str | None = None
    #: The client's address as this server saw it (the audit trail's "from").
    client: str | None = None

    def actor(self) -> str:
        """Who confirms, for the audit trail: the authentication, consumer and client. Commas
        follow the authentication: "bearer" then a space and a word reads as a token to the
        log redaction, which would hide the consumer or the address."""
        named = f", consumer={self.consumer}" if self.consumer else ""
        return f"hook:{self.via}{named}, from {self.client or 'unknown'}"


@dataclass(frozen=True, slots=True)
class ConfirmOutcome:
    status: ConfirmStatus
    message: str
    rotation_id: str | None = None
    secret_id: str | None = None


ConfirmFn = Callable[[str, ConfirmRequest], ConfirmOutcome]

_OUTCOME_HTTP = {
    ConfirmStatus.CONFIRMED: 200,
    ConfirmStatus.ALREADY_CONFIRMED: 200,
    ConfirmStatus.UNKNOWN_TARGET: 404,
    ConfirmStatus.NOT_AWAITING: 409,
    ConfirmStatus.WRONG_SECRET: 409,
    ConfirmStatus.STALE: 409,
    ConfirmStatus.POLICY_REFUSES: 403,
    ConfirmStatus.CONSUMER_REQUIRED: 422,
    ConfirmStatus.UNKNOWN_CONSUMER: 422,
    ConfirmStatus.PROBED_CONSUMER: 409,
}

_ROUTES = Map(
    [
        Rule("/v1/targets/<name>/confirm", methods=["POST"], endpoint="confirm"),
        Rule("/healthz", methods=["GET"], endpoint="healthz"),
        Rule("/readyz", methods=["GET"], endpoint="readyz"),
        Rule("/metrics", methods=["GET"], endpoint="metrics"),
    ],
    strict_slashes=False,
)


class _Answer(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def make_app(
    *,
    confirm: ConfirmFn,
    credentials: HookCredentials | Callable[[], HookCredentials],
    settings: ServerSettings,
    ready: Callable[[], tuple[bool, str]],
    metrics_app: WSGIApp | None = None,
    clock: Callable[[], float] = time.time,
    hook_concurrency: int = HOOK_CONCURRENCY,
) -> WSGIApp:
    """The WSGI app serving the hook, ``/healthz``, ``/readyz`` and ``/metrics``."""
    auth = HookAuthenticator(credentials, window=settings.signature_window, clock=clock)
    limit = hook_concurrency
    return _App(confirm, auth, settings.max_body_bytes, ready, metrics_app, hook_concurrency=limit)


class _App:
    def __init__(
        self,
        confirm: ConfirmFn,
        auth: HookAuthenticator,
        max_body: int,
        ready: Callable[[], tuple[bool, str]],
        metrics_app: WSGIApp | None,
        *,
        hook_concurrency: int = HOOK_CONCURRENCY,
    ) -> None:
        self._confirm = confirm
        self._auth = auth
        self._max_body = max_body
        self._ready = ready
        self._metrics = metrics_app
        self._slots = threading.BoundedSemaphore(hook_concurrency)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = self._max_body + 1  # see _body
        try:
            endpoint, args = _ROUTES.bind_to_environ(environ).match()
        except MethodNotAllowed as e:
            response = _error(405, "method_not_allowed", "method not allowed on this path")
            response.headers["Allow"] = ", ".join(e.valid_methods or ())
        except HTTPException:
            response = _error(404, "not_found", "no such path")
        else:
            if endpoint == "metrics" and self._metrics is not None:
                return self._metrics(environ, start_response)
            try:
                response = self._dispatch(endpoint, args, request)
            except _Answer as answer:
                response = answer.response
            except Exception:
                # A bug: the caller gets a generic 500; the log gets the traceback (no locals).
                log.exception("http.error", path=truncate(request.path, 100))
                response = _error(500, "internal_error", "internal error; see the server's log")
        response.headers["Cache-Control"] = "no-store"
        return response(environ, start_response)

    def _dispatch(self, endpoint: str, args: Mapping[str, Any], request: Request) -> Response:
        if endpoint == "confirm":
            return self._confirm_endpoint(request, str(args["name"]))
        if endpoint == "healthz":
            return _json(200, {"status": "ok"})
        if endpoint == "readyz":
            return self._readyz()
        return _error(404, "not_found", "metrics are not enabled")

    def _readyz(self) -> Response:
        try:
            is_ready, reason = self._ready()
        except Exception:
            log.exception("http.ready_failed")
            is_ready, reason = False, "the readiness check failed; see the server's log"
        if is_ready:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "reason": scrub(reason)})

    # --- the hook -----------------------------------------------------------------------------

    def _confirm_endpoint(self, request: Request, name: str) -> Response:
        where = {"target": truncate(name, 64), "remote": request.remote_addr}
        if not self._auth.credentials.configured:
            raise _reject(503, "hook_not_configured", "the hook is not configured", where)
        via, digest = self._authenticate(request, where)
        signed_at = int(request.headers[TIMESTAMP_HEADER]) if via == "hmac" else None
        confirm = _parse(self._body(request, where), via, where, signed_at)
        confirm = replace(confirm, client=request.remote_addr)
        # Logs call Intercom's ids ``intercom_id`` (see rotator.logs).
        where |= {"via": via, "rotation_id": confirm.rotation_id, "intercom_id": confirm.secret_id}
        # As the configuration allows; anything else is no target: the callback is not bothered.
        if not valid_target_name(name):
            raise _reject(404, "unknown_target", "no such target", where)
        return self._call(name, confirm, digest, where)

    def _authenticate(self, request: Request, where: dict[str, Any]) -> tuple[str, str | None]:
        authorization = request.headers.get("Authorization")
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        try:
            if authorization is not None:
                self._auth.check_bearer(authorization)
                return "bearer", None
            if timestamp is not None or signature is not None:
                body = self._body(request, where)
                return "hmac", self._auth.check_signature(timestamp, signature, body)
        except Rejected as e:
            raise _reject(e.status, e.reason, e.message, where) from None
        raise _reject(401, "missing_credentials", "send a bearer token or a signature", where)

    def _body(self, request: Request, where: dict[str, Any]) -> bytes:
        # werkzeug refuses a Content-Length over its limit before reading anything, but cuts a
        # chunked body at the limit without a word: its limit is one byte over ours, so a body
        # that reaches it is known to be too large. Cached: the signature and JSON see the same.
        try:
            body: bytes | None = request.get_data(cache=True)
        except HTTPException as e:
            if e.code != 413:
                raise _reject(400, "bad_request", "the body could not be read", where) from None
            body = None
        if body is None or len(body) > self._max_body:
            message = f"the body is larger than {self._max_body} bytes"
            raise _reject(413, "body_too_large", message, where)
        return body

    def _call(
        self, name: str, confirm: ConfirmRequest, digest: str | None, where: dict[str, Any]
    ) -> Response:
        if not self._slots.acquire(blocking=False):
            if digest is not None:  # nothing was decided: the same signed request may come again
                self._auth.release(digest)
            log.warning("hook.busy", **where)
            raise _Answer(_unavailable("too many confirmations in progress; retry later", None))
        try:
            outcome = self._confirm(name, confirm)
        except Exception as e:
            if digest is not None:  # nothing was decided: the same signed request may come again
                self._auth.release(digest)
            if isinstance(e, LocalError):
                # This process may not act for the target (another workspace's configuration).
                log.error("hook.confirm_refused", error=str(e), **where)
                raise _Answer(_error(403, "refused", scrub(str(e)))) from None
            if isinstance(e, TemporaryError):
                log.warning("hook.confirm_failed", error=str(e), **where)
                raise _Answer(_unavailable("could not confirm; retry later", e.delay)) from None
            if isinstance(e, RotatorError):
                log.exception("hook.confirm_failed", error=str(e), **where)
                raise _Answer(_error(500, "internal_error", "see the server's log")) from None
            raise
        finally:
            self._slots.release()
        status = outcome.status.value
        rotation_id = outcome.rotation_id or confirm.rotation_id
        secret_id = outcome.secret_id or confirm.secret_id
        where |= {"rotation_id": rotation_id, "intercom_id": secret_id}
        log.info("hook.confirm", status=status, **where)
        http_status = _OUTCOME_HTTP[outcome.status]
        if http_status != 200:
            return _error(http_status, status, scrub(outcome.message))
        body = {
            "target": name,
            "status": status,
            "rotation_id": rotation_id,
            "secret_id": secret_id,
        }
        if confirm.consumer is not None:
            body["consumer"] = confirm.consumer
        return _json(200, body)


def _parse(
    body: bytes, via: str, where: dict[str, Any], signed_at: float | None = None
) -> ConfirmRequest:
    """The ids in a confirmation body; the body itself is never quoted back or logged."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _reject(400, "invalid_json", "the body is not valid JSON", where) from None
    if not isinstance(data, dict):
        raise _reject(400, "invalid_body", "the body must be a JSON object", where)
    ids: dict[str, str | None] = {}
    for key in ("secret_id", "rotation_id"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and valid_secret_id(value)):
            message = f"{key} must be a string of 1-128 letters, digits, '_', '.', ':' or '-'"
            raise _reject(400, "invalid_field", message, where)
        ids[key] = value
    if ids["secret_id"] is None and ids["rotation_id"] is None:
        message = "give secret_id or rotation_id (the new secret, or its rotation)"
        raise _reject(400, "missing_field", message, where)
    consumer = data.get("consumer")
    if consumer is not None and not (isinstance(consumer, str) and valid_target_name(consumer)):
        message = "consumer must be a consumer's name from the configuration (e.g. billing)"
        raise _reject(400, "invalid_field", message, where)
    if consumer is not None:
        where["consumer"] = consumer
    return ConfirmRequest(
        secret_id=ids["secret_id"],
        rotation_id=ids["rotation_id"],
        via=via,
        signed_at=signed_at,
        consumer=consumer,
    )


def _reject(status: int, code: str, message: str, where: Mapping[str, Any]) -> _Answer:
    log.warning("hook.rejected", reason=code, http_status=status, **where)
    response = _error(status, code, message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="rotator"'
    return _Answer(response)


def _json(status: int, payload: Mapping[str, Any]) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def _unavailable(message: str, delay: float | None) -> Response:
    response = _error(503, "temporarily_unavailable", message)
    seconds = RETRY_AFTER if delay is None else delay
    response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})
