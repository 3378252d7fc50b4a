"""HTTP sessions to Intercom: one connection pool per base URL, shared by every target there.

A client per target with a pool of its own cost 8 KB and 2 ms each to make (httpx reads every
proxy variable of the environment per client): 80 MB and 20 s at start for 10,000 targets, and
10,000 pools holding keep-alive connections to the same host. A session carries what is common
to every request at one base URL (TLS, timeouts, proxies from the environment, ``Accept``,
``User-Agent``, no redirects); what is a target's own (its token, its ``Intercom-Version``) goes
with each request (``rotator.intercom.client``), so sharing never mixes one target's
credentials into another's requests.
"""

from __future__ import annotations

import threading

import httpx

import rotator
from rotator.intercom.tls import tls_context


def new_session(
    base_url: str, timeout: httpx.Timeout, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client for ``base_url``, carrying no credentials of its own."""
    return httpx.Client(
        base_url=base_url,
        headers={"Accept": "application/json", "User-Agent": f"rotator/{rotator.__version__}"},
        timeout=timeout,
        transport=transport,
        follow_redirects=False,
        verify=tls_context(base_url),
        # Shared by every target at the base URL: a pool capped at httpx's 100 would make the
        # 101st of up to 256 concurrent passes ([daemon] concurrency) wait for a connection and
        # fail with PoolTimeout. Passes bound the connections in use; 64 stay open between.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
    )


class Sessions:
    """Every session of one process, one per base URL, made on first use (and made again once
    closed: ``close`` ends the connections, not the ability to connect)."""

    def __init__(self, timeout: httpx.Timeout) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._sessions: dict[str, httpx.Client] = {}

    def get(self, base_url: str) -> httpx.Client:
        with self._lock:
            session = self._sessions.get(base_url)
            if session is None or session.is_closed:
                session = self._sessions[base_url] = new_session(base_url, self.timeout)
            return session

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
