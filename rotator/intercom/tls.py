"""The TLS context of the Intercom clients: the CA bundle loaded once per process, and only for
an https base URL.

Loading the bundle (httpx's defaults: certifi's, or ``$SSL_CERT_FILE``/``$SSL_CERT_DIR``) takes
about 20 ms of a one-shot ``rotate-now``, and 1,000 targets would pay it 1,000 times without
sharing. An http base URL (the emulator, a local egress proxy) never
opens TLS to its origin: the client follows no redirect, and a proxy brings its own context.
Its clients get a context that trusts no CA, so it would refuse any certificate, and that costs
nothing to make.
"""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit

import httpx


def tls_context(base_url: str) -> ssl.SSLContext:
    """The context for a client of ``base_url``, shared by all the clients that need one."""
    if urlsplit(base_url).scheme == "https":
        return _ca_bundle()
    return _trusting_none()


@functools.cache
def _ca_bundle() -> ssl.SSLContext:
    return httpx.create_ssl_context()


@functools.cache
def _trusting_none() -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT checks certificates and host names; with no CA, none passes.
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
