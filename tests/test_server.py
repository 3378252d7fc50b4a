"""The daemon's HTTP server, served for real by waitress on a free port and called with httpx.

The ``confirm`` callback is a recording fake (our own seam, where the reconciler plugs in); the
clock is injected, so signature windows are crossed without waiting. Every test's answers and
log output are scanned for the hook's credentials when it ends.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from rotator.config import ServerSettings
from rotator.errors import PermanentError, TemporaryError
from rotator.hook.app import (
    ConfirmOutcome,
    ConfirmRequest,
    ConfirmStatus,
    HookCredentials,
    make_app,
)
from rotator.hook.auth import Rejected, ReplayCache
from rotator.hook.server import HttpServer
from rotator.redaction import REDACTED, SecretValue
from rotator.signing import signature_headers

TOKEN = "hook-bearer-token-5f2c9a7e1b3d"
KEY = "hook-hmac-key-8d3e6b0a4c71f9"
NOW = 1_750_000_000.0
SECRET_ID = "90210"
ROTATION_ID = "rot-3f9a1c"
BODY = json.dumps({"secret_id": SECRET_ID}).encode()


class FakeConfirm:
    """Records every call; answers ``outcome``, raises ``error``, or waits for ``release``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ConfirmRequest]] = []
        self.outcome = ConfirmOutcome(
            ConfirmStatus.CONFIRMED, "confirmed", rotation_id=ROTATION_ID, secret_id=SECRET_ID
        )
        self.error: Exception | None = None
        self.entered = threading.Event()
        self.release: threading.Event | None = None

    def __call__(self, target: str, request: ConfirmRequest) -> ConfirmOutcome:
        self.calls.append((target, request))
        self.entered.set()
        if self.release is not None:
            self.release.wait(30)
        if self.error is not None:
            raise self.error
        return self.outcome


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Hook:
    server: HttpServer
    client: httpx.Client
    confirm: FakeConfirm
    clock: Clock
    readiness: list[tuple[bool, str]]
    answers: list[httpx.Response] = field(default_factory=list)

    def post(
        self, body: bytes = BODY, headers: dict[str, str] | None = None, target: str = "web"
    ) -> httpx.Response:
        return self.client.post(f"/v1/targets/{target}/confirm", content=body, headers=headers)

    def bearer(self, body: bytes = BODY, token: str = TOKEN, target: str = "web") -> httpx.Response:
        return self.post(body, {"Authorization": f"Bearer {token}"}, target)


def signed(body: bytes, at: float, key: str = KEY) -> dict[str, str]:
    """The documented wire format, computed here by hand rather than with our own helper."""
    timestamp = str(int(at))
    mac = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Rotator-Timestamp": timestamp, "X-Rotator-Signature": f"sha256={mac}"}


def events(log_output: io.StringIO, name: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == name]


@pytest.fixture
def make_hook(log_output: io.StringIO) -> Iterator[Callable[..., Hook]]:
    """Start servers; at the end, stop them and scan answers and logs for the credentials."""
    hooks: list[Hook] = []

    def make(
        *,
        credentials: HookCredentials | None = None,
        settings: ServerSettings | None = None,
        metrics_app: Any = None,
        **server_options: Any,
    ) -> Hook:
        confirm, clock, readiness = FakeConfirm(), Clock(), [(True, "")]
        app = make_app(
            confirm=confirm,
            credentials=credentials or HookCredentials(SecretValue(TOKEN), SecretValue(KEY)),
            settings=settings or ServerSettings(),
            ready=lambda: readiness[-1],
            metrics_app=metrics_app,
            clock=clock,
        )
        server = HttpServer(app, "127.0.0.1", 0, **server_options)
        server.start()
        answers: list[httpx.Response] = []

        def keep(response: httpx.Response) -> None:
            response.read()
            answers.append(response)

        client = httpx.Client(base_url=server.url, timeout=10, event_hooks={"response": [keep]})
        hook = Hook(server, client, confirm, clock, readiness, answers)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.client.close()
        hook.server.stop()
    seen = [log_output.getvalue(), *(str(a.headers) + a.text for h in hooks for a in h.answers)]
    for text in seen:
        assert TOKEN not in text
        assert KEY not in text
    # Not even redaction had to step in: nothing tried to log a credential.
    assert REDACTED not in log_output.getvalue()


@pytest.fixture
def hook(make_hook: Callable[..., Hook]) -> Hook:
    return make_hook()


def test_bearer_confirmation_reaches_the_callback(hook: Hook, log_output: io.StringIO):
    """A valid bearer token confirms: 200 with the ids, and the callback got target and ids."""
    response = hook.bearer()
    assert response.status_code == 200
    assert response.json() == {
        "target": "web",
        "status": "confirmed",
        "rotation_id": ROTATION_ID,
        "secret_id": SECRET_ID,
    }
    assert hook.confirm.calls == [
        ("web", ConfirmRequest(SECRET_ID, None, via="bearer", client="127.0.0.1"))
    ]
    [event] = events(log_output, "hook.confirm")
    assert event["target"] == "web"
    assert event["status"] == "confirmed"
    assert event["via"] == "bearer"
    assert event["remote"] == "127.0.0.1"
    assert (event["rotation_id"], event["intercom_id"]) == (ROTATION_ID, SECRET_ID)


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", "Bearer wrong", f"Basic {TOKEN}", "Bearer"])
def test_wrong_bearer_is_refused(hook: Hook, log_output: io.StringIO, header: str):
    """A wrong or malformed Authorization header gets 401 with a challenge; nothing is called."""
    response = hook.post(headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert hook.confirm.calls == []
    assert [e["reason"] for e in events(log_output, "hook.rejected")] == ["invalid_credentials"]


def test_no_credentials_is_refused(hook: Hook):
    """A call with neither a token nor a signature gets 401 and does nothing."""
    response = hook.post()
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_credentials"
    assert hook.confirm.calls == []


def test_signed_confirmation_reaches_the_callback(hook: Hook):
    """A body signed with the key inside the window confirms, recorded as via hmac."""
    body = json.dumps({"rotation_id": ROTATION_ID}).encode()
    response = hook.post(body, signed(body, NOW))
    assert response.status_code == 200
    assert hook.confirm.calls == [
        (
            "web",
            ConfirmRequest(None, ROTATION_ID, via="hmac", signed_at=int(NOW), client="127.0.0.1"),
        )
    ]


@pytest.mark.parametrize("offset", [-300, 300])
def test_signatures_at_the_edge_of_the_window_are_accepted(hook: Hook, offset: int):
    """A timestamp exactly the window away from the clock, either way, is still valid."""
    assert hook.post(BODY, signed(BODY, NOW + offset)).status_code == 200


@pytest.mark.parametrize(
    ("case", "headers", "body", "code"),
    [
        ("wrong key", signed(BODY, NOW, key="another-key-0123456789"), BODY, "invalid_credentials"),
        ("tampered body", signed(BODY, NOW), BODY.replace(b"9", b"8"), "invalid_credentials"),
        ("too old", signed(BODY, NOW - 301), BODY, "signature_expired"),
        ("from the future", signed(BODY, NOW + 301), BODY, "signature_expired"),
        (
            "no timestamp",
            {"X-Rotator-Signature": signed(BODY, NOW)["X-Rotator-Signature"]},
            BODY,
            "invalid_credentials",
        ),
        ("no signature", {"X-Rotator-Timestamp": str(int(NOW))}, BODY, "invalid_credentials"),
        (
            "no prefix",
            {
                **signed(BODY, NOW),
                "X-Rotator-Signature": signed(BODY, NOW)["X-Rotator-Signature"][7:],
            },
            BODY,
            "invalid_credentials",
        ),
        (
            "odd timestamp",
            {**signed(BODY, NOW), "X-Rotator-Timestamp": "1.75e9"},
            BODY,
            "invalid_credentials",
        ),
    ],
)
def test_bad_signatures_are_refused(
    hook: Hook, case: str, headers: dict[str, str], body: bytes, code: str
):
    """A wrong key, a changed body, a stale or future timestamp, or a missing header: 401."""
    response = hook.post(body, headers)
    assert response.status_code == 401, case
    assert response.json()["error"]["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert hook.confirm.calls == []


def test_a_replayed_signature_is_refused(hook: Hook):
    """The same signed request sent twice: the second is a 401 replay, the callback runs once."""
    headers = signed(BODY, NOW)
    assert hook.post(BODY, headers).status_code == 200
    hook.clock.now += 10
    replay = hook.post(BODY, headers)
    assert replay.status_code == 401
    assert replay.json()["error"]["code"] == "signature_replayed"
    assert len(hook.confirm.calls) == 1


def test_a_signature_is_released_when_the_confirmation_failed_temporarily(hook: Hook):
    """After a 503 the sender may retry the very same signed request, and it goes through."""
    headers = signed(BODY, NOW)
    hook.confirm.error = TemporaryError("vault is sealed")
    assert hook.post(BODY, headers).status_code == 503
    hook.confirm.error = None
    assert hook.post(BODY, headers).status_code == 200
    assert len(hook.confirm.calls) == 2


def test_replay_cache_is_bounded_and_forgets_expired_signatures():
    """A full cache refuses new signatures (fail closed) until old ones leave their window."""
    cache = ReplayCache(capacity=2)
    assert cache.claim("a", expires_at=10, now=0)
    assert cache.claim("b", expires_at=20, now=0)
    assert not cache.claim("a", expires_at=10, now=5)
    with pytest.raises(Rejected) as refused:
        cache.claim("c", expires_at=30, now=5)
    assert refused.value.status == 503
    assert cache.claim("c", expires_at=30, now=11)
    assert len(cache) == 2


def test_signature_headers_follow_the_documented_format():
    """Our sender helper produces exactly the headers the hook documents."""
    assert signature_headers(KEY, BODY, NOW + 0.9) == signed(BODY, NOW)


def test_an_oversized_body_is_refused_unread(make_hook: Callable[..., Hook]):
    """A body over max_body_bytes gets 413, by Content-Length or while reading chunks."""
    hook = make_hook(settings=ServerSettings(max_body_bytes=1024))
    body = json.dumps({"secret_id": SECRET_ID, "pad": "x" * 1024}).encode()
    response = hook.bearer(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    chunked = hook.client.post(
        "/v1/targets/web/confirm",
        content=iter([body[:600], body[600:]]),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert chunked.status_code == 413
    assert hook.post(body, signed(body, NOW)).status_code == 413
    assert hook.confirm.calls == []


def test_the_server_bounds_bodies_on_every_route(make_hook: Callable[..., Hook]):
    """The server's own limit refuses a body beyond it before the app sees the request."""
    hook = make_hook(max_request_body=2048)
    response = hook.bearer(json.dumps({"secret_id": SECRET_ID, "pad": "x" * 4096}).encode())
    assert response.status_code == 413
    assert hook.confirm.calls == []


@pytest.mark.parametrize(
    "body",
    [
        b'{"secret_id": "90210"',
        b"\xff\xfe",
        b"",
        b'["90210"]',
        b"{}",
        b'{"secret_id": null}',
        b'{"secret_id": 90210}',
        b'{"rotation_id": ["rot-1"]}',
        b'{"secret_id": ""}',
        b'{"secret_id": "a b"}',
    ],
)
def test_malformed_confirmations_are_refused(hook: Hook, body: bytes):
    """Bad JSON, no id, or an id that is not a plain string gets 400 and calls nothing."""
    response = hook.bearer(body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] in {
        "invalid_json",
        "invalid_body",
        "invalid_field",
        "missing_field",
    }
    assert hook.confirm.calls == []


def test_the_body_is_never_echoed(hook: Hook):
    """A rejected body's content does not come back in the answer."""
    marker = "do-not-echo-this-body-7731"
    for body in (f'{{"secret_id": 5, "x": "{marker}"}}', f'{{"{marker}'):
        assert marker not in hook.bearer(body.encode()).text


@pytest.mark.parametrize(
    ("status", "http_status"),
    [
        (ConfirmStatus.UNKNOWN_TARGET, 404),
        (ConfirmStatus.WRONG_SECRET, 409),
        (ConfirmStatus.NOT_AWAITING, 409),
        (ConfirmStatus.POLICY_REFUSES, 403),
    ],
)
def test_refusing_outcomes_map_to_http_errors(hook: Hook, status: ConfirmStatus, http_status: int):
    """Each refusal from the callback has its status code, code and message."""
    hook.confirm.outcome = ConfirmOutcome(status, f"because {status.value}")
    response = hook.bearer()
    assert response.status_code == http_status
    assert response.json() == {
        "error": {"code": status.value, "message": f"because {status.value}"}
    }


def test_an_already_confirmed_secret_is_a_success(hook: Hook):
    """Confirming twice is not an error: 200 with already_confirmed."""
    hook.confirm.outcome = ConfirmOutcome(
        ConfirmStatus.ALREADY_CONFIRMED, "done", rotation_id=ROTATION_ID, secret_id=SECRET_ID
    )
    response = hook.bearer()
    assert response.status_code == 200
    assert response.json()["status"] == "already_confirmed"


def test_a_target_name_that_cannot_exist_is_unknown(hook: Hook):
    """A name no configuration could hold is a 404 without asking the callback."""
    assert hook.bearer(target="Not%20A%20Target").status_code == 404
    assert hook.confirm.calls == []


def test_a_temporary_failure_is_a_503_with_retry_after(hook: Hook):
    """TemporaryError from the callback: 503, a Retry-After, and not its message."""
    hook.confirm.error = TemporaryError("vault at 10.0.0.7 is sealed", delay=7.5)
    response = hook.bearer()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "8"
    assert response.json()["error"]["code"] == "temporarily_unavailable"
    assert "10.0.0.7" not in response.text


def test_other_failures_are_a_generic_500(hook: Hook, log_output: io.StringIO):
    """Any other RotatorError: 500 with a generic message; the reason goes to the log."""
    hook.confirm.error = PermanentError("state record at rotator/state/web is corrupt")
    response = hook.bearer()
    assert response.status_code == 500
    assert "corrupt" not in response.text
    assert "corrupt" in events(log_output, "hook.confirm_failed")[0]["error"]


def test_an_unconfigured_hook_answers_503_but_health_works(make_hook: Callable[..., Hook]):
    """With no token and no key the hook is off (503); liveness and readiness still answer."""
    hook = make_hook(credentials=HookCredentials(None, None))
    response = hook.bearer()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "hook_not_configured"
    assert hook.client.get("/healthz").status_code == 200
    assert hook.client.get("/readyz").status_code == 200


def test_healthz_answers_while_running(hook: Hook):
    """Liveness is 200 ok."""
    response = hook.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_follows_the_ready_callable(hook: Hook):
    """Readiness is 200 when ready() says so, else 503 with its reason."""
    assert hook.client.get("/readyz").json() == {"status": "ready"}
    hook.readiness.append((False, "vault unreachable"))
    response = hook.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "reason": "vault unreachable"}


def test_metrics_are_delegated_when_given(make_hook: Callable[..., Hook]):
    """/metrics is served by the injected WSGI app."""

    def metrics(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
        return [b"rotator_up 1\n"]

    response = make_hook(metrics_app=metrics).client.get("/metrics")
    assert (response.status_code, response.text) == (200, "rotator_up 1\n")
    assert response.headers["Content-Type"].startswith("text/plain")


def test_metrics_are_404_without_an_app(hook: Hook):
    """/metrics without a metrics app is a JSON 404."""
    response = hook.client.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_unknown_paths_and_methods_get_json_errors(hook: Hook):
    """An unknown path is a JSON 404; GET on the hook is a JSON 405 naming POST."""
    missing = hook.client.get("/v2/anything")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong = hook.client.get("/v1/targets/web/confirm")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]


def test_credentials_never_leave_the_process(hook: Hook, log_output: io.StringIO):
    """Across every kind of call, no answer or log line holds the token, key or a signature."""
    headers = signed(BODY, NOW)
    hook.bearer()
    hook.bearer(token=KEY)
    hook.bearer(f'{{"secret_id": "{TOKEN}"}}'.encode())
    hook.post(BODY, headers)
    hook.post(BODY, headers)
    hook.post(BODY, signed(BODY, NOW - 3600))
    hook.post(f'{{"x": "{KEY}"'.encode(), {"Authorization": f"Bearer {TOKEN}"})
    hook.confirm.error = TemporaryError("vault is sealed")
    hook.bearer()
    texts = [log_output.getvalue(), *(str(a.headers) + a.text for a in hook.answers)]
    assert len(texts) == 9
    for text in texts:
        for credential in (TOKEN, KEY, headers["X-Rotator-Signature"][7:]):
            assert credential not in text


def test_stop_returns_within_its_timeout_while_a_request_hangs(hook: Hook):
    """A request stuck in the callback does not hold stop() past its timeout."""
    hook.confirm.release = threading.Event()
    outcome: list[object] = []

    def call() -> None:
        with httpx.Client(base_url=hook.server.url, timeout=10) as client:
            try:
                outcome.append(
                    client.post(
                        "/v1/targets/web/confirm",
                        content=BODY,
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                )
            except httpx.HTTPError as e:
                outcome.append(e)

    caller = threading.Thread(target=call)
    caller.start()
    try:
        assert hook.confirm.entered.wait(5)
        started = time.monotonic()
        hook.server.stop(timeout=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        hook.confirm.release.set()
        caller.join(10)
    assert outcome


def test_stop_lets_a_request_in_flight_finish(hook: Hook):
    """stop() during a request waits for it: the caller gets its 200, then nothing listens."""
    # The callback returns only once stop() has begun: the request is in flight across it.
    hook.confirm.release = hook.server._stopping
    answers: list[httpx.Response] = []

    def call() -> None:
        with httpx.Client(base_url=hook.server.url, timeout=10) as client:
            answers.append(
                client.post(
                    "/v1/targets/web/confirm",
                    content=BODY,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                )
            )

    caller = threading.Thread(target=call)
    caller.start()
    assert hook.confirm.entered.wait(5)
    stopper = threading.Thread(target=hook.server.stop, kwargs={"timeout": 5})
    started = time.monotonic()
    stopper.start()
    stopper.join(10)
    caller.join(10)
    assert time.monotonic() - started < 5
    assert [a.status_code for a in answers] == [200]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{hook.server.url}/healthz", timeout=2)
