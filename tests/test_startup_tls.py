"""The Intercom client's TLS, now that it is set up by the first request: an https base URL is
still checked against the CA bundle (httpx's defaults, here ``$SSL_CERT_FILE``), and an http one
(the emulator, a local egress proxy) never reads the bundle. Each case runs in its own process,
as the bundle is loaded once per process; the server is the emulator itself, behind TLS."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN, Emulator
from rotator.emulator.state import Token

# Lists the secrets of the workspace at argv[1]: the number listed, or the error it met.
LIST = """\
import sys
from rotator.errors import RotatorError
from rotator.intercom import IntercomClient
with IntercomClient(sys.argv[2], base_url=sys.argv[1]) as client:
    try:
        print("listed", len(client.list_secrets()))
    except RotatorError as e:
        print("refused:", e)
"""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> Path:
    """A self-signed certificate (and its key, in the same file) for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    pem = tmp_path_factory.mktemp("tls") / "server.pem"
    command = [shutil.which("openssl") or "openssl", "req", "-x509", "-nodes", "-days", "2"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-subj", "/CN=127.0.0.1"]
    command += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(pem), "-out", str(pem)]
    subprocess.run(command, check=True, capture_output=True)
    return pem


@pytest.fixture
def https_emulator(certificate: Path) -> Iterator[str]:
    """The emulator served over TLS with that certificate: its https URL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate)
    app = Emulator(tokens=[Token.parse(f"{INTERCOM_EMULATOR_TOKEN}:read,write")]).app
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    yield f"https://127.0.0.1:{server.port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def list_secrets(url: str, **environ: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"SSL_CERT_FILE", "SSL_CERT_DIR"}}
    result = subprocess.run(
        [sys.executable, "-c", LIST, url, INTERCOM_EMULATOR_TOKEN],
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip().rpartition("\n")[2] + result.stderr  # its last line: the outcome


def test_https_is_checked_against_the_ca_bundle(https_emulator, certificate):
    """A client of an https URL trusts what the CA bundle holds: the emulator's certificate
    once $SSL_CERT_FILE names it, and not otherwise (certifi's bundle does not hold it)."""
    assert list_secrets(https_emulator, SSL_CERT_FILE=str(certificate)) == "listed 0"
    refused = list_secrets(https_emulator)
    assert refused.startswith("refused:"), refused
    assert "certificate" in refused.lower()


def test_https_reads_the_bundle_and_http_never_does(https_emulator, emulator, tmp_path):
    """With $SSL_CERT_FILE naming no file, an https client cannot load its CA bundle and fails,
    while an http client never reads it: it lists the emulator's secrets."""
    missing = str(tmp_path / "no-such-bundle.pem")
    assert list_secrets(emulator.url, SSL_CERT_FILE=missing) == "listed 0"
    failed = list_secrets(https_emulator, SSL_CERT_FILE=missing)
    assert "FileNotFoundError" in failed
    assert "listed" not in failed
