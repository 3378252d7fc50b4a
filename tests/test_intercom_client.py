"""The Intercom client against hand-made answers (httpx.MockTransport): the error table,
retries, and what is sent. Every request it sends is checked against the contract."""

from __future__ import annotations

import email.utils
import inspect
import json
import pickle
import random
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _contract import Contract, ContractTransport

from rotator.errors import (
    LocalError,
    OutcomeUnknownError,
    PermanentError,
    RotatorError,
    TemporaryError,
)
from rotator.intercom import (
    REGION_BASE_URLS,
    CreateOutcomeUnknown,
    DeleteOutcome,
    IntercomAuthError,
    IntercomClient,
    IntercomPermissionError,
    IntercomProtocolError,
    IntercomRateLimited,
    IntercomRequestError,
    IntercomUnavailable,
    IntercomValidationError,
    Platforms,
    RetryPolicy,
)

TOKEN = "dG9rOmNsaWVudC10ZXN0LXRva2Vu"
MATERIAL = "9Zw0xNs3vKk0fPz9rwKqNbzH3mPVQmQxL9vhSm9Tk4A"
REQUEST_ID = "6f8e61d8-6a9a-4f1e-bfbb-6c7c0c0aef1c"
WEB = Platforms(web=True)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that replays scripted answers and records requests."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


@pytest.fixture
def mock_client(contract_or_none: Contract | None, sleeps: list[float]):
    def make(recorder: Recorder, **kwargs: Any) -> IntercomClient:
        transport: httpx.BaseTransport = httpx.MockTransport(recorder)
        if contract_or_none is not None:
            transport = ContractTransport(contract_or_none, transport, check_responses=False)
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("rng", random.Random(7))
        return IntercomClient(TOKEN, transport=transport, **kwargs)

    return make


def error_body(code: str, message: str, request_id: str | None = REQUEST_ID) -> dict[str, Any]:
    return {
        "type": "error.list",
        "request_id": request_id,
        "errors": [{"code": code, "message": message}],
    }


def secret_json(
    secret_id: str = "103", name: str = "Production Web", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "identity_verification_secret",
        "id": secret_id,
        "name": name,
        "supports_android": False,
        "supports_ios": False,
        "supports_web": True,
        "created_at": 1734537500,
        **extra,
    }


CREATED = httpx.Response(201, json=secret_json(secret=MATERIAL))
LISTED = httpx.Response(200, json={"type": "list", "data": [secret_json("102")]})


# --- what is sent -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "host"),
    [("us", "api.intercom.io"), ("eu", "api.eu.intercom.io"), ("au", "api.au.intercom.io")],
)
def test_region_selects_its_host(mock_client, region, host):
    """Each region talks to its own Intercom host, over HTTPS."""
    recorder = Recorder(LISTED)
    mock_client(recorder, region=region).list_secrets()
    assert recorder.requests[0].url == f"https://{host}/secure_mode_secrets"
    assert REGION_BASE_URLS[region] == f"https://{host}"


def test_base_url_overrides_region(mock_client):
    """An explicit base_url wins over the region, trailing slash or not."""
    recorder = Recorder(LISTED)
    mock_client(recorder, region="eu", base_url="http://127.0.0.1:4010/").list_secrets()
    assert str(recorder.requests[0].url) == "http://127.0.0.1:4010/secure_mode_secrets"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "mars"}, "unknown Intercom region 'mars'"),
        ({"base_url": "ftp://example.com"}, "must be an http(s) URL"),
        ({"base_url": "https://example.com/?x=1"}, "must not carry a query"),
    ],
)
def test_bad_endpoint_settings_are_refused(kwargs, message):
    """A region or base_url that cannot work is refused when the client is built."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        IntercomClient(TOKEN, **kwargs)


def test_headers_and_body_follow_the_contract(mock_client):
    """Bearer auth, JSON accept, Intercom-Version (Preview by default) and the create body."""
    recorder = Recorder(CREATED)
    mock_client(recorder).create_secret("Production Web", Platforms(web=True, ios=True))
    sent = recorder.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["Intercom-Version"] == "Preview"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.content) == {
        "name": "Production Web",
        "supports_web": True,
        "supports_ios": True,
        "supports_android": False,
    }


def test_intercom_version_is_configurable(mock_client):
    """The Intercom-Version header carries the configured version."""
    recorder = Recorder(LISTED)
    mock_client(recorder, version="2.11").list_secrets()
    assert recorder.requests[0].headers["Intercom-Version"] == "2.11"


def test_timeouts_are_explicit(mock_client):
    """Every request carries the configured connect/read/write/pool timeouts."""
    recorder = Recorder(LISTED)
    timeout = httpx.Timeout(connect=1.0, read=2.0, write=3.0, pool=4.0)
    mock_client(recorder, timeout=timeout).list_secrets()
    assert recorder.requests[0].extensions["timeout"] == {
        "connect": 1.0,
        "read": 2.0,
        "write": 3.0,
        "pool": 4.0,
    }


def test_secret_ids_are_escaped_in_the_path():
    """An opaque id cannot change which URL a DELETE goes to."""
    recorder = Recorder(httpx.Response(204))
    # Not contract-checked: the checker decodes %2F, which is the point of this test.
    IntercomClient(TOKEN, transport=httpx.MockTransport(recorder)).delete_secret("../102")
    assert recorder.requests[0].url.raw_path == b"/secure_mode_secrets/..%2F102"


# --- what is understood ---------------------------------------------------------------------


def test_list_parses_the_contract_objects(mock_client):
    """The list answer becomes typed SecretInfo objects."""
    secrets = mock_client(Recorder(LISTED)).list_secrets()
    assert [(s.id, s.name, s.supports_web, s.created_at) for s in secrets] == [
        ("102", "Production Web", True, 1734537500)
    ]


def test_create_returns_material_that_does_not_show_itself(mock_client):
    """The material is readable once through reveal(), never through repr or str."""
    created = mock_client(Recorder(CREATED)).create_secret("Production Web", WEB)
    assert created.info.id == "103"
    assert created.secret.reveal() == MATERIAL
    for text in (repr(created), str(created), f"{created.secret}", repr(created.info)):
        assert MATERIAL not in text
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(created.secret)


def test_repr_of_client_hides_the_token():
    """The client's repr names its endpoint, never its token."""
    assert TOKEN not in repr(IntercomClient(TOKEN))


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (httpx.Response(204), DeleteOutcome.DELETED),
        (
            httpx.Response(
                404,
                json=error_body(
                    "identity_verification_secret_not_found",
                    "Identity verification secret not found",
                ),
            ),
            DeleteOutcome.ALREADY_DELETED,
        ),
    ],
)
def test_delete_outcomes(mock_client, answer, outcome):
    """204 is deleted; the contract's 404 is 'already deleted', which callers treat as done."""
    assert mock_client(Recorder(answer)).delete_secret("102") is outcome


def test_a_404_that_is_not_intercom_is_not_taken_for_a_deletion(mock_client):
    """A 404 from something that is not Intercom (wrong base_url) is an error, not success."""
    with pytest.raises(IntercomRequestError, match="Check base_url"):
        mock_client(Recorder(httpx.Response(404, text="<html>nginx</html>"))).delete_secret("102")


# --- the error table ----------------------------------------------------------------------

OPERATIONS: dict[str, Callable[[IntercomClient], Any]] = {
    "list": lambda c: c.list_secrets(),
    "create": lambda c: c.create_secret("Production Web", WEB),
    "delete": lambda c: c.delete_secret("102"),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize(
    ("status", "code", "error_class", "kind"),
    [
        (401, "unauthorized", IntercomAuthError, PermanentError),
        (403, "forbidden", IntercomPermissionError, PermanentError),
        (422, "parameter_invalid", IntercomValidationError, PermanentError),
        (400, "bad_request", IntercomRequestError, PermanentError),
        (409, "conflict", IntercomRequestError, PermanentError),
    ],
)
def test_permanent_errors_are_not_retried(mock_client, operation, status, code, error_class, kind):
    """401, 403, 422 and other 4xx raise their error at once, carrying the request_id."""
    recorder = Recorder(httpx.Response(status, json=error_body(code, "no")))
    with pytest.raises(error_class) as caught:
        OPERATIONS[operation](mock_client(recorder))
    assert isinstance(caught.value, kind)
    assert len(recorder.requests) == 1
    assert caught.value.request_id == REQUEST_ID
    assert caught.value.status == status
    assert caught.value.operation == operation
    assert REQUEST_ID in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "scope"),
    [
        ("list", "read_secure_mode_secret"),
        ("create", "write_secure_mode_secret"),
        ("delete", "write_secure_mode_secret"),
    ],
)
def test_permission_error_names_the_missing_scope(mock_client, operation, scope):
    """A 403 says which scope the token needs for what was attempted."""
    recorder = Recorder(httpx.Response(403, json=error_body("forbidden", "nope")))
    with pytest.raises(IntercomPermissionError) as caught:
        OPERATIONS[operation](mock_client(recorder))
    assert caught.value.scope == scope
    assert scope in str(caught.value)


def test_validation_error_carries_intercoms_message(mock_client):
    """A 422 quotes Intercom's explanation."""
    recorder = Recorder(
        httpx.Response(422, json=error_body("parameter_invalid", "name is required"))
    )
    with pytest.raises(IntercomValidationError, match="parameter_invalid: name is required"):
        mock_client(recorder).create_secret("x", WEB)


def test_request_id_falls_back_to_the_header(mock_client):
    """Without a request_id in the body, the X-Request-Id header is used."""
    answer = httpx.Response(
        401, json=error_body("unauthorized", "no", None), headers={"X-Request-Id": "hdr-1"}
    )
    with pytest.raises(IntercomAuthError) as caught:
        mock_client(Recorder(answer)).list_secrets()
    assert caught.value.request_id == "hdr-1"


# --- retries ------------------------------------------------------------------------------


def rate_limited(**headers: str) -> httpx.Response:
    return httpx.Response(429, json=error_body("rate_limit_exceeded", "slow down"), headers=headers)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_429_waits_for_retry_after_then_retries(mock_client, sleeps, operation):
    """A 429 is retried, for every operation, after exactly the Retry-After seconds."""
    success = {"list": LISTED, "create": CREATED, "delete": httpx.Response(204)}[operation]
    recorder = Recorder(
        rate_limited(**{"Retry-After": "7"}), rate_limited(**{"Retry-After": "2"}), success
    )
    OPERATIONS[operation](mock_client(recorder))
    assert len(recorder.requests) == 3
    assert sleeps == [7.0, 2.0]


def test_429_uses_ratelimit_reset_without_retry_after(mock_client, sleeps):
    """Without Retry-After, the wait lasts until X-RateLimit-Reset (by the injected clock)."""
    recorder = Recorder(rate_limited(**{"X-RateLimit-Reset": "1000012"}), LISTED)
    mock_client(recorder, clock=lambda: 1_000_000.0).list_secrets()
    assert sleeps == [12.0]


def test_429_understands_an_http_date(mock_client, sleeps):
    """Retry-After may be an HTTP date."""
    when = email.utils.formatdate(1_000_030, usegmt=True)
    recorder = Recorder(rate_limited(**{"Retry-After": when}), LISTED)
    mock_client(recorder, clock=lambda: 1_000_000.0).list_secrets()
    assert sleeps == [30.0]


def test_a_long_retry_after_is_handed_to_the_caller(mock_client, sleeps):
    """A Retry-After beyond max_retry_after is not slept through: the caller reschedules."""
    recorder = Recorder(rate_limited(**{"Retry-After": "600"}))
    with pytest.raises(IntercomRateLimited) as caught:
        mock_client(recorder).list_secrets()
    assert caught.value.delay == 600.0
    assert isinstance(caught.value, TemporaryError)
    assert sleeps == []
    assert len(recorder.requests) == 1


def test_429_gives_up_after_the_attempts(mock_client, sleeps):
    """Retries are bounded: after the last attempt the rate limit error surfaces."""
    recorder = Recorder(rate_limited(**{"Retry-After": "1"}))
    with pytest.raises(IntercomRateLimited, match="after 3 attempts"):
        mock_client(recorder, retry=RetryPolicy(attempts=3)).list_secrets()
    assert len(recorder.requests) == 3
    assert sleeps == [1.0, 1.0]


@pytest.mark.parametrize("operation", ["list", "delete"])
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried_with_jittered_exponential_backoff(
    mock_client, sleeps, operation, status
):
    """GET and DELETE retry 5xx with full jitter under a doubling, capped ceiling."""
    recorder = Recorder(httpx.Response(status, json=error_body("server_error", "oops")))
    policy = RetryPolicy(attempts=5, initial_backoff=1.0, max_backoff=3.0)
    with pytest.raises(IntercomUnavailable, match="after 5 attempts"):
        OPERATIONS[operation](mock_client(recorder, retry=policy))
    assert len(recorder.requests) == 5
    ceilings = [1.0, 2.0, 3.0, 3.0]
    assert len(sleeps) == 4
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(sleeps, ceilings, strict=True))
    assert len(set(sleeps)) == 4, "jitter makes every wait different"


@pytest.mark.parametrize("operation", ["list", "delete"])
@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
        httpx.WriteError("reset"),
    ],
)
def test_transport_errors_on_idempotent_requests_are_retried(
    mock_client, sleeps, operation, failure
):
    """A lost connection on GET or DELETE is retried and the retry's answer is used."""
    success = {"list": LISTED, "delete": httpx.Response(204)}[operation]
    recorder = Recorder(failure, success)
    OPERATIONS[operation](mock_client(recorder))
    assert len(recorder.requests) == 2
    assert len(sleeps) == 1


def test_delete_retried_after_a_lost_answer_finds_it_already_deleted(mock_client):
    """The first DELETE worked but its answer was lost; the retry's 404 means done."""
    gone = httpx.Response(404, json=error_body("identity_verification_secret_not_found", "gone"))
    recorder = Recorder(httpx.ReadTimeout("lost"), gone)
    assert mock_client(recorder).delete_secret("102") is DeleteOutcome.ALREADY_DELETED


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, json=error_body("server_error", "oops")),
        httpx.Response(503, text="upstream unavailable"),
        httpx.ReadTimeout("no answer in time"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.WriteTimeout("stalled while sending"),
        httpx.Response(201, text="not json"),
        httpx.Response(201, json=secret_json()),  # created, but no material in the answer
    ],
)
def test_a_create_with_unknown_outcome_is_never_repeated(mock_client, sleeps, answer):
    """POST is sent once; when its outcome is unknown the caller must list, not retry."""
    recorder = Recorder(answer, CREATED)
    with pytest.raises(CreateOutcomeUnknown) as caught:
        mock_client(recorder).create_secret("Production Web · rotator g1 abc", WEB)
    assert isinstance(caught.value, OutcomeUnknownError)
    assert not isinstance(caught.value, TemporaryError)
    assert len(recorder.requests) == 1
    assert sleeps == []
    assert "List the secrets" in str(caught.value) or "list the secrets" in str(caught.value)


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("no route"), httpx.PoolTimeout("busy")],
)
def test_a_create_that_never_left_is_retried(mock_client, failure):
    """A POST whose connection could not even be opened is safe to send again."""
    recorder = Recorder(failure, CREATED)
    created = mock_client(recorder).create_secret("Production Web", WEB)
    assert created.info.id == "103"
    assert len(recorder.requests) == 2


def test_a_create_refused_with_429_is_retried(mock_client, sleeps):
    """429 means Intercom did not act on the POST: retrying it creates one secret, not two."""
    recorder = Recorder(rate_limited(**{"Retry-After": "3"}), CREATED)
    assert mock_client(recorder).create_secret("Production Web", WEB).info.id == "103"
    assert sleeps == [3.0]


# --- nothing of httpx escapes -----------------------------------------------------------------

HTTPX_EXCEPTIONS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(httpx, inspect.isclass)
        if issubclass(cls, Exception) and cls.__module__.startswith("httpx")
    ),
    key=lambda cls: cls.__name__,
)


def _instantiate(cls: type[Exception]) -> Exception:
    for args in (("boom",), ()):
        try:
            return cls(*args)
        except TypeError:
            continue
    request = httpx.Request("GET", "https://api.intercom.io/secure_mode_secrets")
    return cls("boom", request=request, response=httpx.Response(500, request=request))  # type: ignore[call-arg]


def test_every_httpx_exception_is_covered():
    """The list below is httpx's whole exception tree, so a new one cannot slip by."""
    names = {cls.__name__ for cls in HTTPX_EXCEPTIONS}
    assert {"HTTPError", "TransportError", "InvalidURL", "StreamError", "CookieConflict"} <= names
    assert len(HTTPX_EXCEPTIONS) >= 25


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("exception_class", HTTPX_EXCEPTIONS, ids=lambda c: c.__name__)
def test_httpx_exceptions_never_escape(mock_client, operation, exception_class):
    """Whatever httpx raises, the caller sees a RotatorError chained to it, never httpx's own."""
    failure = _instantiate(exception_class)
    recorder = Recorder(failure)
    with pytest.raises(RotatorError) as caught:
        OPERATIONS[operation](mock_client(recorder))
    assert not isinstance(caught.value, httpx.HTTPError)
    assert type(caught.value).__module__.startswith("rotator.")
    assert caught.value.operation == operation


def test_an_unreadable_list_is_a_protocol_error(mock_client):
    """A 200 that is not the contract's list is refused, not half-understood."""
    for body in ({"type": "list"}, {"data": [{"name": "no id"}]}, [1, 2]):
        with pytest.raises(IntercomProtocolError, match="does not follow the contract"):
            mock_client(Recorder(httpx.Response(200, json=body))).list_secrets()


def test_a_redirect_is_not_followed(mock_client):
    """A 3xx is reported (it means a wrong base_url), never followed with our token."""
    recorder = Recorder(httpx.Response(301, headers={"Location": "https://evil.example/"}))
    with pytest.raises(IntercomRequestError):
        mock_client(recorder).list_secrets()
    assert len(recorder.requests) == 1


# --- what errors may quote --------------------------------------------------------------------


def test_error_bodies_are_truncated_and_redacted(mock_client):
    """A remote body quoted in an error is cut short and has tokens and secrets removed."""
    body = f'{{"secret": "{MATERIAL}", "note": "Bearer {TOKEN}"}}' + "x" * 5000
    with pytest.raises(IntercomRequestError) as caught:
        mock_client(Recorder(httpx.Response(400, text=body))).list_secrets()
    message = str(caught.value)
    assert MATERIAL not in message
    assert TOKEN not in message
    assert "[REDACTED]" in message
    assert len(message) < 600
    assert "more characters" in message


@pytest.mark.parametrize("token", [TOKEN + "\n", TOKEN + "\x00x", TOKEN + "é", TOKEN + " "])
def test_a_token_no_header_can_carry_is_this_process_error_not_the_network(token):
    """A token with a newline, a control or a non-ASCII character inside it stops the request
    before it leaves: a LocalError saying so (no block of the shared record), never "the
    connection broke off", and the token is not quoted."""
    with socket.socket() as listening:  # connections are accepted by the kernel: no server
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        url = f"http://127.0.0.1:{listening.getsockname()[1]}"
        with (
            pytest.raises(LocalError) as caught,  # when it is made, or at its first request
            IntercomClient(token, base_url=url, sleep=lambda _: None) as client,
        ):
            client.list_secrets()
    message = str(caught.value)
    assert "a header value holds what HTTP does not allow" in message
    assert "broke off" not in message
    assert TOKEN not in message


def test_a_password_in_base_url_stays_out_of_messages():
    """An error naming a base_url with a user and password shows them as `***@`."""
    url = "http://ops:hunter2-password@127.0.0.1:9"
    client = IntercomClient(TOKEN, base_url=url, sleep=lambda _: None)
    with client, pytest.raises(IntercomUnavailable) as caught:
        client.list_secrets()
    assert "http://***@127.0.0.1:9" in str(caught.value)
    assert "hunter2" not in str(caught.value) + repr(client)
