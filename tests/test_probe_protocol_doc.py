"""docs/probe-protocol.md is what consumers implement, in any language: its test vector is what
rotator computes, its Python probe snippet, run as written on loopback, answers what rotator
accepts, and its signing snippet signs what the emulator verifies, both ways."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.core.names import valid_secret_id
from rotator.emulator.state import new_material, user_hash
from rotator.signing import FINGERPRINT_LABEL, probe_fingerprint

DOC = (Path(__file__).resolve().parents[1] / "docs" / "probe-protocol.md").read_text()
PROBE_PATH = "/.well-known/intercom-secret"


def fenced(language: str, first_line: str | None = None) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, re.DOTALL)
    return [b for b in blocks if first_line is None or b.startswith(first_line + "\n")]


def snippet(first_line: str) -> dict[str, Any]:
    """The names the doc's Python block starting with ``first_line`` defines, run as written."""
    (block,) = fenced("python", first_line)
    names: dict[str, Any] = {"__name__": "doc_snippet"}
    exec(compile(block, f"docs/probe-protocol.md ({first_line})", "exec"), names)  # noqa: S102
    return names


def vector(name: str) -> str:
    """A value of the doc's test vector table (the first code span of its row)."""
    found = re.search(rf"^\| {re.escape(name)} \| `([^`]+)`", DOC, re.MULTILINE)
    assert found is not None, f"no {name!r} row in the test vector"
    return found[1]


@pytest.fixture
def probe_server() -> Iterator[tuple[str, list[Any]]]:
    """The doc's Python probe, serving on loopback what ``loaded[0]`` says is held."""
    loaded: list[Any] = [None]
    server = snippet("# probe.py")["serve_probe"](lambda: loaded[0], "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", loaded
    finally:
        server.shutdown()
        server.server_close()


def test_the_test_vector_is_what_rotator_computes():
    """The doc's fingerprint and user_hash of its 43-byte secret are rotator's own results, and
    its label is the one rotator uses."""
    secret = vector("secret")
    assert len(secret.encode("ascii")) == 43
    assert vector("label").encode("ascii") == FINGERPRINT_LABEL
    assert vector("fingerprint") == probe_fingerprint(secret)
    assert vector("`user_hash` of `user-42`") == user_hash(secret, "user-42")
    (example,) = fenced("json")
    assert json.loads(example)["fingerprint"] == probe_fingerprint(secret)


def test_the_python_snippet_answers_what_rotator_accepts(probe_server):
    """Run as written: 503 before a secret is loaded, then 200 with a JSON object naming the
    loaded id and its fingerprint (32 lowercase hex characters, rotator's value), well under the
    body limit; another path is a 404."""
    url, loaded = probe_server
    with httpx.Client(timeout=5, follow_redirects=False) as http:
        assert http.get(url + PROBE_PATH).status_code == 503
        for intercom_id, secret in [("103", vector("secret")), ("104", new_material())]:
            loaded[0] = (intercom_id, secret)
            answer = http.get(url + PROBE_PATH)
            assert answer.status_code == 200
            assert answer.headers["Content-Type"] == "application/json"
            assert len(answer.content) <= 4096
            body = answer.json()
            assert body == {"intercom_id": intercom_id, "fingerprint": probe_fingerprint(secret)}
            assert valid_secret_id(body["intercom_id"])
            assert re.fullmatch(r"[0-9a-f]{32}", body["fingerprint"])
        assert http.get(url + "/other").status_code == 404


def test_the_signing_snippet_signs_what_the_emulator_verifies(intercom_emulator):
    """The doc's user_hash matches its vector, and both its user_hash and its Messenger JWT
    verify at the emulator with a live secret (and not with another)."""
    signing = snippet("# signing.py")
    assert signing["user_hash"](vector("secret"), "user-42") == vector("`user_hash` of `user-42`")
    live = intercom_emulator.store.create("default", "s", web=True, ios=False, android=False)
    verify = f"{intercom_emulator.url}/__verify"

    def valid(**params: str) -> bool:
        answer = httpx.get(verify, params=params, timeout=5)
        assert answer.status_code == 200
        return bool(answer.json()["valid"])

    for secret, expected in [(live.secret, True), (new_material(), False)]:
        assert valid(user_id="u-7", user_hash=signing["user_hash"](secret, "u-7")) is expected
        assert valid(user_id="u-7", jwt=signing["messenger_jwt"](secret, "u-7")) is expected


def test_the_go_snippets_use_the_same_label_path_and_truncation():
    """No Go toolchain here: the Go blocks are at least checked for the protocol's constants."""
    probe, signing = fenced("go")
    assert f'"{FINGERPRINT_LABEL.decode()}"' in probe
    assert f"GET {PROBE_PATH}" in probe
    assert "[:32]" in probe
    assert "jwt.SigningMethodHS256" in signing
    assert '"user_id"' in signing
