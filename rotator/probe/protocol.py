"""The probe protocol: what a consumer instance answers, and what rotator makes of it.

This docstring is the specification consumers implement (``docs/probe-protocol.md`` explains it
with examples in several languages).

The request
-----------
rotator sends ``GET <probe url>`` with ``Accept: application/json``, ``Accept-Encoding:
identity`` and ``User-Agent: rotator/<version> probe``, no credentials, no cookies, no proxy.
For a ``probe_dns`` consumer the URL's host is one resolved address and the ``Host`` header (and,
over https, the TLS server name the certificate is checked against) is the DNS name with its
port: ``GET http://10.1.2.3:8080/.well-known/intercom-secret`` with ``Host:
mobile-api-headless.api.svc.cluster.local:8080``.

The answer
----------
``200`` with a JSON object (any ``Content-Type``, no ``Content-Encoding``), at most
``max_body_bytes`` (4096 by default)::

    {"intercom_id": "103", "fingerprint": "3f1c0a9b5e7d2c4f8a6b1e0d9c7f5a3b"}

* ``intercom_id`` (required): the id of the Intercom secret this instance signs with *now*, a
  string of 1 to 128 letters, digits, ``.``, ``_``, ``:`` or ``-`` (``"103"``, not ``103``).
* ``fingerprint`` (optional; ``null`` is the same as absent): proof that the instance holds the
  secret's material, not only its id: HMAC-SHA256 keyed by the secret (its UTF-8 bytes) over the
  ASCII bytes ``rotator-fingerprint-v1``, the first 32 lowercase hex characters
  (``rotator.signing.probe_fingerprint``). rotator compares it with the stored material's; it
  helps sign nothing else. Give it: ``require_fingerprint = true`` refuses answers without it.
* Any other key is ignored, so an answer may carry a version or a build id.

Anything else is not an answer, and the instance counts as not switched. rotator records the
*kind* of failure (never the answer itself: an endpoint could echo anything) as the instance's
error, shown by ``rotator status``:

============================  ===============================================================
``HTTP 503``                  any status but 200; redirects are not followed (``HTTP 302``)
``too large``                 the body is longer than ``max_body_bytes``
``encoded answer``            a ``Content-Encoding`` other than ``identity``
``not JSON``                  the body is not JSON (or not UTF-8/16/32 text)
``not a JSON object``         a list, a string, a number ...
``no intercom_id``            the key is missing
``malformed intercom_id``     not a string, or characters outside the set above
``malformed fingerprint``     not 32 lowercase hex characters
``timed out``                 no complete answer within ``[probes] timeout``
``no answer in the round``    the round's ``deadline`` passed first
``refused or unreachable``    the connection could not be opened
``closed without answering``  the connection was closed (or reset) before a whole answer
``not HTTP``                  the answer does not parse as HTTP/1.1
``TLS: ...``                  ``certificate not trusted``, ``handshake failed``, ``ca_cert
                              unusable`` (the configured bundle could not be loaded)
============================  ===============================================================
"""

from __future__ import annotations

import json
import re
import ssl
from typing import Final

import httpx

from rotator.core.names import valid_secret_id
from rotator.core.observation import InstanceAnswer

FINGERPRINT: Final = re.compile(r"[0-9a-f]{32}")
REQUEST_HEADERS: Final = {"Accept": "application/json", "Accept-Encoding": "identity"}


async def read_answer(
    response: httpx.Response, address: str, max_body_bytes: int
) -> InstanceAnswer:
    """One instance's answer (a response opened with ``stream=True``), read at most
    ``max_body_bytes`` (plus one network chunk) into memory."""
    if response.status_code != 200:
        return InstanceAnswer(address, error=f"HTTP {response.status_code}")
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in {"", "identity"}:
        # Never decompressed: a small compressed answer can inflate to gigabytes.
        return InstanceAnswer(address, error="encoded answer")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        return InstanceAnswer(address, error="too large")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_body_bytes:
            return InstanceAnswer(address, error="too large")
    return parse_answer(address, bytes(body))


def parse_answer(address: str, body: bytes) -> InstanceAnswer:
    """A 200 answer's body, judged by the rules above."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: deeply nested brackets
        return InstanceAnswer(address, error="not JSON")
    if not isinstance(document, dict):
        return InstanceAnswer(address, error="not a JSON object")
    if "intercom_id" not in document:
        return InstanceAnswer(address, error="no intercom_id")
    intercom_id = document["intercom_id"]
    if not isinstance(intercom_id, str) or not valid_secret_id(intercom_id):
        return InstanceAnswer(address, error="malformed intercom_id")
    fingerprint = document.get("fingerprint")
    if fingerprint is not None and (
        not isinstance(fingerprint, str) or FINGERPRINT.fullmatch(fingerprint) is None
    ):
        return InstanceAnswer(address, error="malformed fingerprint")
    return InstanceAnswer(address, intercom_id=intercom_id, fingerprint=fingerprint)


def failure_kind(error: Exception) -> str:
    """The kind of failure an exception raised while asking an instance stands for: a fixed
    phrase (status output, metric labels), never the exception's text."""
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return "timed out"
    if isinstance(error, httpx.ConnectError):
        return _tls_kind(error) or "refused or unreachable"
    if isinstance(error, httpx.RemoteProtocolError):
        # h11's words for a peer that hung up before a status line; anything else is garbage.
        return "closed without answering" if "disconnected" in str(error) else "not HTTP"
    if isinstance(error, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        # A reset rather than a clean close: which one a peer that hangs up sends is luck.
        return "closed without answering"
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL | httpx.LocalProtocolError):
        return "bad request"  # config validation keeps these out; a resolver could let one in
    if isinstance(error, httpx.HTTPError | httpx.StreamError | httpx.CookieConflict):
        return "HTTP client error"
    return "probe failed"


def _tls_kind(error: BaseException) -> str | None:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, ssl.SSLCertVerificationError):
            return "TLS: certificate not trusted"
        if isinstance(current, ssl.SSLError):
            return "TLS: handshake failed"
        if type(current).__name__ in {"EndOfStream", "BrokenResourceError"}:
            # anyio's words for a peer that hung up mid-handshake (a connect never reads).
            return "TLS: handshake failed"
        current = current.__cause__ or current.__context__
    return None
