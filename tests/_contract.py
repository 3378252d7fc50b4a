"""Checks of HTTP exchanges against Intercom's published OpenAPI contract (openapi-core).

The contract is read from ``$INTERCOM_CONTRACT``, else ``../shared/contracts/`` beside the
repository (never copied into it). Where it is absent the tests that need it skip, saying so.

The contract declares 201/204/401/404/422 answers; the API also answers 403, 429 and 5xx, which
the contract does not list. Those are checked against the contract's own ``error`` schema (the
``error.list`` every Intercom error uses), so nothing the emulator says goes unchecked.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from openapi_schema_validator import OAS30Validator
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

CONTRACT_NAME = "intercom-secure-mode-secrets.openapi.yaml"
REPO = Path(__file__).resolve().parent.parent
# The spec's first server: validation matches requests by path, whatever host served them.
SPEC_HOST = "https://api.intercom.io"


def contract_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where the contract may be, in order: ``$INTERCOM_CONTRACT`` (the file), then
    ``<repository>/../shared/contracts/``. Nothing else: the project knows no machine's layout."""
    explicit = (os.environ if environ is None else environ).get("INTERCOM_CONTRACT")
    beside = REPO.parent / "shared" / "contracts" / CONTRACT_NAME
    return [Path(explicit), beside] if explicit else [beside]


def find_contract(environ: Mapping[str, str] | None = None) -> Path | None:
    """The first of ``contract_candidates`` that is a file, else ``None`` (the tests skip)."""
    return next((c for c in contract_candidates(environ) if c.is_file()), None)


class ContractViolation(AssertionError):
    pass


class Contract:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.spec: dict[str, Any] = yaml.safe_load(path.read_text())
        self.openapi = OpenAPI.from_dict(self.spec)
        self._error_validator = OAS30Validator(self.spec["components"]["schemas"]["error"])
        self.checked = 0

    def operation(self, method: str, path: str) -> Mapping[str, Any] | None:
        """The contract's operation for ``method path`` (``{id}`` matches any segment)."""
        for template, item in self.spec["paths"].items():
            if _path_matches(template, path) and method.lower() in item:
                return item[method.lower()]
        return None

    def check_request(
        self, method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> None:
        request = _werkzeug_request(method, path, headers, body)
        result = self.openapi.unmarshal_request(WerkzeugOpenAPIRequest(request))
        if result.errors:
            raise ContractViolation(
                f"{method} {path}: request breaks the contract: {result.errors}"
            )
        self.checked += 1

    def check_response(
        self,
        method: str,
        path: str,
        request_headers: Iterable[tuple[str, str]],
        request_body: bytes,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> None:
        operation = self.operation(method, path)
        if operation is None:
            raise ContractViolation(f"{method} {path}: no such operation in the contract")
        self.checked += 1
        if str(status) in operation["responses"]:
            request = _werkzeug_request(method, path, request_headers, request_body)
            response = Response(body, status=status, headers=list(headers))
            result = self.openapi.unmarshal_response(
                WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
            )
            if result.errors:
                raise ContractViolation(
                    f"{method} {path} -> {status}: answer breaks the contract: {result.errors}"
                )
            return
        if status < 400:
            raise ContractViolation(f"{method} {path} -> {status}: undeclared success status")
        try:
            payload = json.loads(body)
        except ValueError:
            raise ContractViolation(
                f"{method} {path} -> {status}: error body is not JSON"
            ) from None
        problems = [e.message for e in self._error_validator.iter_errors(payload)]
        if payload.get("type") != "error.list" or not payload.get("errors"):
            problems.append("an error answer must be a non-empty error.list")
        if problems:
            raise ContractViolation(f"{method} {path} -> {status}: bad error body: {problems}")


def _path_matches(template: str, path: str) -> bool:
    want = template.strip("/").split("/")
    got = path.strip("/").split("/")
    return len(want) == len(got) and all(
        w == g or (w.startswith("{") and w.endswith("}") and g)
        for w, g in zip(want, got, strict=True)
    )


def _werkzeug_request(
    method: str, path: str, headers: Iterable[tuple[str, str]], body: bytes
) -> Request:
    # Drop Host: the request is matched by path against the contract's first server.
    kept = [(k, v) for k, v in headers if k.lower() != "host"]
    builder = EnvironBuilder(
        path=path, base_url=SPEC_HOST, method=method, headers=kept, data=body or None
    )
    try:
        return builder.get_request()
    finally:
        builder.close()


class ContractTransport(httpx.BaseTransport):
    """Wraps a transport: every request sent and every answer received is checked."""

    def __init__(
        self, contract: Contract, inner: httpx.BaseTransport, *, check_responses: bool = True
    ) -> None:
        self.contract = contract
        self.inner = inner
        # Off for hand-made answers (MockTransport) that break the contract on purpose.
        self.check_responses = check_responses

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        headers = list(request.headers.multi_items())
        self.contract.check_request(request.method, request.url.path, headers, body)
        response = self.inner.handle_request(request)
        response.read()
        if not self.check_responses:
            return response
        self.contract.check_response(
            request.method,
            request.url.path,
            headers,
            body,
            response.status_code,
            response.headers.multi_items(),
            response.content,
        )
        return response

    def close(self) -> None:
        self.inner.close()


class ContractMiddleware:
    """WSGI middleware: checks every answer the emulator gives to the contract's operations."""

    def __init__(self, contract: Contract, app: Callable[..., Any]) -> None:
        self.contract = contract
        self.app = app
        self.violations: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        if request.path.startswith("/__"):
            return self.app(environ, start_response)
        request_body = request.get_data()
        # Hand the app the same bytes: the stream we just read is spent.
        environ["wsgi.input"] = io.BytesIO(request_body)
        environ["CONTENT_LENGTH"] = str(len(request_body))
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"] = int(status.split(maxsplit=1)[0])
            captured["headers"] = headers
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        if self.contract.operation(request.method, request.path) is not None:
            try:
                self.contract.check_response(
                    request.method,
                    request.path,
                    list(request.headers.items()),
                    request_body,
                    captured["status"],
                    captured["headers"],
                    body,
                )
            except ContractViolation as e:
                self.violations.append(str(e))
        return [body]
