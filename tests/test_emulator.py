"""The Intercom emulator over real HTTP: auth, scopes, validation, soft delete, verification,
faults and persistence. Every answer it gives is checked against the contract (conftest)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time

import httpx
import jwt
import pytest

from rotator.emulator import Emulator, FaultSpec, FaultSpecError, Token, user_hash
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.emulator.state import StateFileError, messenger_jwt, new_material
from rotator.intercom import (
    CreateOutcomeUnknown,
    DeleteOutcome,
    IntercomPermissionError,
    IntercomValidationError,
    Platforms,
)

# One client for the module: building one per request costs an SSL context each time.
HTTP = httpx.Client(timeout=10)
AUTH = {"Authorization": f"Bearer {INTERCOM_EMULATOR_TOKEN}", "Intercom-Version": "Preview"}
WEB = Platforms(web=True)


@pytest.fixture(scope="module", autouse=True)
def _close_http():
    yield
    HTTP.close()


def post(emulator, body, headers=AUTH) -> httpx.Response:
    return HTTP.post(f"{emulator.url}/secure_mode_secrets", json=body, headers=headers)


def errors_of(response: httpx.Response) -> list[dict]:
    payload = response.json()
    assert payload["type"] == "error.list"
    assert payload["request_id"] == response.headers["X-Request-Id"]
    return payload["errors"]


# --- authentication and scopes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {INTERCOM_EMULATOR_TOKEN}"}],
)
def test_requests_without_a_valid_token_get_401(emulator, headers):
    """No token, an unknown token or another scheme: 401 unauthorized, for every operation."""
    for method, path in [
        ("GET", "/secure_mode_secrets"),
        ("POST", "/secure_mode_secrets"),
        ("DELETE", "/secure_mode_secrets/100"),
    ]:
        response = HTTP.request(
            method, emulator.url + path, headers=headers, json={"name": "x", "supports_web": True}
        )
        assert response.status_code == 401
        assert errors_of(response) == [{"code": "unauthorized", "message": "Access Token Invalid"}]
    assert emulator.store.all() == []


def test_scopes_are_enforced(emulator, make_client):
    """Listing needs the read scope; creating and deleting need the write scope."""
    emulator.emulator.add_token(Token.parse("reader-token:read"))
    emulator.emulator.add_token(Token.parse("writer-token:write"))
    existing = make_client().create_secret("existing", WEB)
    reader, writer = make_client("reader-token"), make_client("writer-token")
    assert [s.id for s in reader.list_secrets()] == [existing.info.id]
    with pytest.raises(IntercomPermissionError, match="write_secure_mode_secret"):
        reader.create_secret("nope", WEB)
    with pytest.raises(IntercomPermissionError, match="write_secure_mode_secret"):
        reader.delete_secret(existing.info.id)
    with pytest.raises(IntercomPermissionError, match="read_secure_mode_secret"):
        writer.list_secrets()
    assert len(emulator.store.live("default")) == 1


def test_workspaces_are_isolated(emulator, make_client):
    """A token sees and deletes only its own workspace's secrets."""
    emulator.emulator.add_token(Token.parse("other-token:read,write:acme"))
    mine = make_client().create_secret("mine", WEB)
    other = make_client("other-token")
    assert other.list_secrets() == []
    assert other.delete_secret(mine.info.id) is DeleteOutcome.ALREADY_DELETED
    assert emulator.store.get(mine.info.id).deleted_at is None


def test_an_unknown_intercom_version_is_refused(emulator):
    """Intercom-Version must be one of the contract's versions."""
    response = HTTP.get(
        f"{emulator.url}/secure_mode_secrets", headers={**AUTH, "Intercom-Version": "9.9"}
    )
    assert response.status_code == 400
    assert errors_of(response)[0]["code"] == "intercom_version_invalid"


# --- create, list, delete ---------------------------------------------------------------------


def test_create_returns_256_bits_of_base64url_material_once(emulator, make_client):
    """The create answer carries a fresh 256-bit secret; the list never shows it."""
    client = make_client()
    before = int(time.time())
    created = client.create_secret("Production Web", Platforms(web=True, android=True))
    material = created.secret.reveal()
    assert len(base64.urlsafe_b64decode(material + "=")) == 32
    assert set(material) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert created.info.id.isdigit()
    assert before <= created.info.created_at <= int(time.time())
    assert (
        created.info.supports_web,
        created.info.supports_ios,
        created.info.supports_android,
    ) == (True, False, True)
    raw = HTTP.get(f"{emulator.url}/secure_mode_secrets", headers=AUTH)
    assert material not in raw.text
    assert raw.json()["data"][0] == {
        "type": "identity_verification_secret",
        "id": created.info.id,
        "name": "Production Web",
        "supports_android": True,
        "supports_ios": False,
        "supports_web": True,
        "created_at": created.info.created_at,
    }


def test_every_secret_is_different(make_client):
    """Two creates give two ids and two materials."""
    client = make_client()
    a, b = client.create_secret("a", WEB), client.create_secret("b", WEB)
    assert a.info.id != b.info.id
    assert a.secret != b.secret


def test_delete_is_soft_and_then_404(emulator, make_client):
    """A deleted secret leaves the list, stays in the store's audit, and deletes as 404."""
    client = make_client()
    keep, drop = client.create_secret("keep", WEB), client.create_secret("drop", WEB)
    assert client.delete_secret(drop.info.id) is DeleteOutcome.DELETED
    assert [s.id for s in client.list_secrets()] == [keep.info.id]
    assert client.delete_secret(drop.info.id) is DeleteOutcome.ALREADY_DELETED
    assert emulator.store.get(drop.info.id).deleted_at is not None
    response = HTTP.delete(f"{emulator.url}/secure_mode_secrets/{drop.info.id}", headers=AUTH)
    assert response.status_code == 404
    assert errors_of(response)[0]["code"] == "identity_verification_secret_not_found"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"supports_web": True}, "name is required"),
        ({"name": "", "supports_web": True}, "name must be a non-empty string"),
        ({"name": "   ", "supports_web": True}, "name must be a non-empty string"),
        ({"name": 7, "supports_web": True}, "name must be a non-empty string"),
        ({"name": "x" * 256, "supports_web": True}, "at most 255 characters"),
        (
            {"name": "x"},
            "At least one of supports_web, supports_ios or supports_android must be true",
        ),
        ({"name": "x", "supports_web": False, "supports_ios": False}, "At least one of"),
        ({"name": "x", "supports_web": "yes"}, "supports_web must be a boolean"),
        ({"name": "x", "supports_ios": 1}, "supports_ios must be a boolean"),
        (["name", "x"], "must be a JSON object"),
    ],
)
def test_invalid_create_parameters_get_422(emulator, body, message):
    """Bad names and platform flags are refused with 422 parameter_invalid and create nothing."""
    response = post(emulator, body)
    assert response.status_code == 422
    [error] = errors_of(response)
    assert error["code"] == "parameter_invalid"
    assert message in error["message"]
    assert emulator.store.all() == []


def test_a_body_that_is_not_json_gets_422(emulator):
    """A create whose body does not parse is a 422 too."""
    response = HTTP.post(
        f"{emulator.url}/secure_mode_secrets",
        content=b"{nope",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert "not valid JSON" in errors_of(response)[0]["message"]


def test_client_sees_the_422_message(make_client):
    """The client carries the emulator's validation message."""
    with pytest.raises(IntercomValidationError, match="name must be at most 255"):
        make_client().create_secret("x" * 300, WEB)


def test_unknown_routes_and_methods_answer_json_errors(emulator):
    """Outside the contract's operations: JSON 404 and 405 (with Allow)."""
    missing = HTTP.get(f"{emulator.url}/contacts", headers=AUTH)
    assert missing.status_code == 404
    assert errors_of(missing)[0]["code"] == "not_found"
    wrong = HTTP.put(f"{emulator.url}/secure_mode_secrets", headers=AUTH)
    assert wrong.status_code == 405
    assert "POST" in wrong.headers["Allow"]


# --- verification, as Messenger does it ------------------------------------------------------


def test_verify_checks_user_hash_against_live_secrets(emulator, make_client):
    """HMAC-SHA256 hex of user_id with a live secret verifies; after deletion it does not."""
    client = make_client()
    created = client.create_secret("web", WEB)
    good = user_hash(created.secret.reveal(), "user-42")

    def verify(**params) -> bool:
        response = HTTP.get(f"{emulator.url}/__verify", params=params)
        assert response.status_code == 200
        return response.json()["valid"]

    assert verify(user_id="user-42", user_hash=good)
    assert verify(user_id="user-42", user_hash=good.upper())
    assert not verify(user_id="user-43", user_hash=good)
    assert not verify(user_id="user-42", user_hash="0" * 64)
    assert verify(user_id="user-42", user_hash=good, platform="web")
    assert not verify(user_id="user-42", user_hash=good, platform="ios")
    client.delete_secret(created.info.id)
    assert not verify(user_id="user-42", user_hash=good)


def test_verify_needs_its_parameters(emulator):
    """/__verify without user_id or user_hash is a 400, not a silent false."""
    assert HTTP.get(f"{emulator.url}/__verify", params={"user_id": "u"}).status_code == 400
    assert (
        HTTP.get(
            f"{emulator.url}/__verify", params={"user_id": "u", "user_hash": "h", "platform": "tv"}
        ).status_code
        == 400
    )


def test_verify_uses_the_workspace_of_the_token(emulator, make_client):
    """With a bearer token, /__verify checks that token's workspace."""
    emulator.emulator.add_token(Token.parse("acme-token:read,write:acme"))
    created = make_client("acme-token").create_secret("acme", WEB)
    params = {"user_id": "u1", "user_hash": user_hash(created.secret.reveal(), "u1")}
    assert not HTTP.get(f"{emulator.url}/__verify", params=params).json()["valid"]
    headers = {"Authorization": "Bearer acme-token"}
    assert HTTP.get(f"{emulator.url}/__verify", params=params, headers=headers).json()["valid"]
    assert HTTP.get(f"{emulator.url}/__verify", params={**params, "workspace": "acme"}).json()[
        "valid"
    ]


# --- Messenger JWTs (HS256, same secret) ----------------------------------------------------


def verify_jwt(emulator, token: str, **params) -> bool:
    response = HTTP.get(f"{emulator.url}/__verify", params={"jwt": token, **params})
    assert response.status_code == 200, response.text
    return response.json()["valid"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_signed(header: dict, claims: dict, key: bytes | None, digest=hashlib.sha256) -> str:
    """A JWT built byte by byte, for what PyJWT will not encode (or warns about)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def test_verify_checks_a_messenger_jwt_against_live_secrets(emulator, make_client):
    """An HS256 JWT with a user_id claim signed by a live secret verifies, with or without
    user_id (which must then equal the claim) and per platform; after deletion it does not."""
    client = make_client()
    created = client.create_secret("web", WEB)
    token = messenger_jwt(created.secret.reveal(), "user-42")
    assert verify_jwt(emulator, token)
    assert verify_jwt(emulator, token, user_id="user-42")
    assert not verify_jwt(emulator, token, user_id="user-43")
    assert verify_jwt(emulator, token, platform="web")
    assert not verify_jwt(emulator, token, platform="ios")
    client.delete_secret(created.info.id)
    assert not verify_jwt(emulator, token)


def test_verify_refuses_a_jwt_signed_with_another_secret(emulator, make_client):
    """A well-formed HS256 JWT signed with material Intercom never issued does not verify."""
    make_client().create_secret("web", WEB)
    assert not verify_jwt(emulator, messenger_jwt(new_material(), "user-42"))


def test_verify_refuses_jwts_with_another_algorithm(emulator, make_client):
    """alg=none (no signature) and HS512 keyed by the live secret are both refused: only HS256."""
    secret = make_client().create_secret("web", WEB).secret.reveal()
    claims = {"user_id": "user-42"}
    assert verify_jwt(
        emulator, hand_signed({"alg": "HS256", "typ": "JWT"}, claims, secret.encode())
    )
    assert not verify_jwt(emulator, hand_signed({"alg": "none", "typ": "JWT"}, claims, None))
    assert not verify_jwt(
        emulator,
        hand_signed({"alg": "HS512", "typ": "JWT"}, claims, secret.encode(), hashlib.sha512),
    )


@pytest.mark.parametrize(
    "claims", [{"sub": "user-42"}, {"user_id": ""}, {"user_id": 42}, {"user_id": None}]
)
def test_verify_refuses_a_jwt_without_a_user_id_claim(emulator, make_client, claims):
    """A correctly signed JWT whose user_id claim is missing, empty or not a string is invalid."""
    secret = make_client().create_secret("web", WEB).secret.reveal()
    assert not verify_jwt(emulator, jwt.encode(claims, secret, algorithm="HS256"))


def test_verify_reads_jwt_expiry_on_the_emulators_clock():
    """exp is compared with the emulator's injected clock, not the wall clock: valid while the
    clock is before it, invalid from that second on; a non-numeric exp never verifies."""
    now = [1000.0]
    emulator = Emulator(tokens=[Token.parse("t-123456:read,write")], clock=lambda: now[0])
    with emulator.serve() as running:
        secret = running.store.create("default", "s", web=True, ios=False, android=False).secret
        token = messenger_jwt(secret, "user-42", exp=1500)
        assert verify_jwt(running, token), "the wall clock is long past 1500: it is not read"
        now[0] = 1499.5
        assert verify_jwt(running, token)
        now[0] = 1500.0
        assert not verify_jwt(running, token)
        assert verify_jwt(running, messenger_jwt(secret, "user-42"))
        for exp in ["99999999999", True]:
            odd = jwt.encode({"user_id": "user-42", "exp": exp}, secret, algorithm="HS256")
            assert not verify_jwt(running, odd)


@pytest.mark.parametrize(
    "params",
    [
        {"jwt": "a.b.c", "user_hash": "h", "user_id": "u"},
        {},
        {"user_id": "u"},
        {"jwt": "a.b.c", "platform": "tv"},
    ],
    ids=["both", "neither", "user-id-only", "bad-platform"],
)
def test_verify_needs_exactly_one_of_user_hash_or_jwt(emulator, params):
    """Both user_hash and jwt, neither, or an unknown platform: a 400 saying what to send."""
    response = HTTP.get(f"{emulator.url}/__verify", params=params)
    assert response.status_code == 400
    assert "user_hash" in response.json()["error"]
    assert "jwt" in response.json()["error"]


def test_verify_answers_false_to_a_malformed_jwt(emulator, make_client):
    """Garbage in the jwt parameter is an invalid token (200, false), never a server error."""
    make_client().create_secret("web", WEB)
    for garbage in ["not-a-jwt", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30."]:
        assert not verify_jwt(emulator, garbage)


# --- faults -----------------------------------------------------------------------------------


def test_429_fault_carries_rate_limit_headers(emulator):
    """An injected 429 says when to come back: Retry-After and the X-RateLimit-* headers."""
    emulator.set_faults("429=1:5")
    response = HTTP.get(f"{emulator.url}/secure_mode_secrets", headers=AUTH)
    assert response.status_code == 429
    assert errors_of(response)[0]["code"] == "rate_limit_exceeded"
    assert response.headers["Retry-After"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Limit"]) > 0
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time()) + 4


def test_normal_answers_carry_rate_limit_headers(emulator):
    """Like Intercom, every API answer reports the rate limit and what is left of it."""
    first = HTTP.get(f"{emulator.url}/secure_mode_secrets", headers=AUTH)
    second = HTTP.get(f"{emulator.url}/secure_mode_secrets", headers=AUTH)
    assert int(second.headers["X-RateLimit-Remaining"]) < int(
        first.headers["X-RateLimit-Remaining"]
    )


@pytest.mark.parametrize(
    ("spec", "statuses"), [("5xx=1:503", {503}), ("5xx=1", {500, 502, 503, 504})]
)
def test_5xx_fault(emulator, spec, statuses):
    """Injected server errors answer with the chosen status, or a mix, and change nothing."""
    emulator.set_faults(spec + ",seed=3")
    seen = {post(emulator, {"name": "x", "supports_web": True}).status_code for _ in range(30)}
    assert seen <= statuses
    assert len(seen) == len(statuses)
    assert emulator.store.all() == []


def test_post_drop_creates_the_secret_and_answers_nothing(emulator, make_client):
    """post_drop: the secret exists at Intercom, the client gets no answer and says so."""
    emulator.set_faults("post_drop=1")
    client = make_client()
    with pytest.raises(CreateOutcomeUnknown):
        client.create_secret("Production Web · rotator g2 deadbe", WEB)
    emulator.set_faults("")
    [orphan] = client.list_secrets()
    assert orphan.name == "Production Web · rotator g2 deadbe"
    with pytest.raises(httpx.RemoteProtocolError):
        emulator.set_faults("post_drop=1")
        post(emulator, {"name": "raw", "supports_web": True})


def test_post_drop_can_be_limited_to_a_number_of_times(emulator, make_client):
    """post_drop=1:1 drops exactly one create's answer, then answers normally."""
    emulator.set_faults("post_drop=1:1")
    client = make_client()
    with pytest.raises(CreateOutcomeUnknown):
        client.create_secret("first", WEB)
    assert client.create_secret("second", WEB).info.name == "second"
    assert len(emulator.store.live("default")) == 2


def test_latency_fault_uses_the_injected_sleep():
    """latency=RATE:DURATION waits that long before answering (the sleep is injectable)."""
    waited: list[float] = []
    emulator = Emulator(
        tokens=[Token.parse("t-123456:read")],
        faults=FaultSpec.parse("latency=1:20ms"),
        sleep=waited.append,
    )
    with emulator.serve() as running:
        headers = {"Authorization": "Bearer t-123456"}
        assert HTTP.get(f"{running.url}/secure_mode_secrets", headers=headers).status_code == 200
    assert waited == [0.02]


def test_list_lag_shows_the_workspace_as_it_was():
    """list_lag=RATE:DURATION: a lagging list misses secrets created within DURATION and still
    shows secrets deleted within it; the secrets themselves are created and deleted at once."""
    now = [1000.0]
    emulator = Emulator(tokens=[Token.parse("t-123456:read,write")], clock=lambda: now[0])
    headers = {"Authorization": "Bearer t-123456"}
    with emulator.serve() as running:
        old = running.store.create("default", "old", web=True, ios=False, android=False)
        now[0] += 60
        running.set_faults("list_lag=1:30s")
        fresh = post(running, {"name": "fresh", "supports_web": True}, headers).json()

        def listed() -> list[str]:
            answer = HTTP.get(f"{running.url}/secure_mode_secrets", headers=headers)
            return [s["id"] for s in answer.json()["data"]]

        assert listed() == [old.id], "a secret created 0 s ago shows in a 30 s-old view"
        assert (
            HTTP.delete(f"{running.url}/secure_mode_secrets/{old.id}", headers=headers).status_code
            == 204
        )
        assert listed() == [old.id], "a secret deleted 0 s ago is still listed"
        now[0] += 31
        assert listed() == [fresh["id"]]
        running.set_faults("list_lag=0:1h")
        assert listed() == [fresh["id"]]


def test_faults_are_reproducible_with_a_seed(emulator):
    """The same seed gives the same sequence of faults."""

    def run() -> list[int]:
        emulator.set_faults("5xx=0.5:500,seed=11")
        return [
            HTTP.get(f"{emulator.url}/secure_mode_secrets", headers=AUTH).status_code
            for _ in range(20)
        ]

    first = run()
    assert first == run()
    assert {200, 500} == set(first)


def test_test_endpoints_are_not_subject_to_faults(emulator):
    """/__verify and /__health answer whatever faults are set."""
    emulator.set_faults("5xx=1,429=1")
    assert HTTP.get(f"{emulator.url}/__health").json() == {"ok": True}
    assert HTTP.get(
        f"{emulator.url}/__verify", params={"user_id": "u", "user_hash": "h"}
    ).json() == {"valid": False}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("429", "has no '='"),
        ("teapot=0.1", "unknown fault 'teapot'"),
        ("429=1.5", "from 0 to 1"),
        ("429=lots", "must be a number"),
        ("5xx=0.1:404", "from 500 to 599"),
        ("latency=1", "latency needs a duration"),
        ("list_lag=0.5", "list_lag needs a duration"),
        ("latency=1:soon", "invalid duration"),
        ("post_drop=0.1:x", "post_drop TIMES must be an integer"),
        ("429=0.1,429=0.2", "given twice"),
        ("seed=x", "seed must be an integer"),
    ],
)
def test_bad_fault_specs_are_explained(spec, message):
    """Each mistake in a fault spec gets its own message."""
    with pytest.raises(FaultSpecError, match=message):
        FaultSpec.parse(spec)


def test_fault_spec_round_trips():
    """describe() writes a spec back in the syntax parse() reads."""
    spec = FaultSpec.parse(
        "429=0.2:3, 5xx=0.1:503, latency=0.5:20ms, post_drop=0.05:2, list_lag=0.5:3s, seed=7"
    )
    assert FaultSpec.parse(spec.describe()) == spec
    assert FaultSpec().describe() == "none"


# --- tokens and persistence -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "scopes", "workspace"),
    [
        ("tok:read,write", {"read_secure_mode_secret", "write_secure_mode_secret"}, "default"),
        ("tok:read_secure_mode_secret", {"read_secure_mode_secret"}, "default"),
        ("tok::acme", set(), "acme"),
        ("tok:", set(), "default"),
    ],
)
def test_token_specs(spec, scopes, workspace):
    """TOKEN:SCOPES[:WORKSPACE] with short or full scope names."""
    token = Token.parse(spec)
    assert (token.value, set(token.scopes), token.workspace) == ("tok", scopes, workspace)
    assert "tok" not in repr(token)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("tok", "TOKEN:SCOPES"), (":read", "TOKEN:SCOPES"), ("tok:admin", "unknown scope 'admin'")],
)
def test_bad_token_specs_are_explained(spec, message):
    """A malformed --token says how to write one."""
    with pytest.raises(ValueError, match=message):
        Token.parse(spec)


def test_state_file_survives_a_restart(tmp_path):
    """With a state file, secrets (and deletions) outlive the emulator process."""
    path = tmp_path / "state" / "intercom.json"
    token = Token.parse("t-123456:read,write")
    first = Emulator(tokens=[token], state_file=path)
    kept = first.store.create("default", "kept", web=True, ios=False, android=False)
    gone = first.store.create("default", "gone", web=True, ios=False, android=False)
    first.store.delete("default", gone.id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = Emulator(tokens=[token], state_file=path)
    assert [s.id for s in second.store.live("default")] == [kept.id]
    assert second.store.get(kept.id).secret == kept.secret
    assert second.store.create("default", "next", web=True, ios=False, android=False).id not in {
        kept.id,
        gone.id,
    }


def test_a_corrupt_state_file_is_refused(tmp_path):
    """A state file that is not the emulator's is an error, not an empty world."""
    path = tmp_path / "intercom.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(StateFileError, match="unsupported state version"):
        Emulator(state_file=path)
    path.write_text("{not json")
    with pytest.raises(StateFileError, match="cannot read emulator state file"):
        Emulator(state_file=path)


def test_serving_on_a_taken_port_raises_instead_of_exiting():
    """A port another program holds is an OSError its caller can report (werkzeug alone would
    print its own message and exit the process)."""
    import errno
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use") as raised:
            Emulator().serve(port=taken.getsockname()[1])
    assert raised.value.errno == errno.EADDRINUSE
