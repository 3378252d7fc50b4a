"""rotator's error tree.

Every failure that crosses a module boundary is one of these; the libraries' own exceptions
(httpx, hvac) are wrapped ``from`` the original inside their adapter and never escape it::

    RotatorError                      .message, .request_id, .status, .operation
    ├── TemporaryError                retrying later may help; .delay suggests when (seconds)
    ├── OutcomeUnknownError           a side effect may or may not have happened: observe the
    │                                 world (e.g. list secrets) before doing anything else
    └── PermanentError                retrying will not help: an operator must act
        └── LocalError                only this process is wrong (a missing variable, another
            │                         workspace's token): it fails, the shared record is untouched
            └── SetupError            what the configuration asks of this host cannot be had (its
                                      listen port is taken): the operator's to fix, exit 2

Adapters subclass these (``rotator.intercom.errors`` for Intercom). Messages are written for
the operator who reads them in ``status`` or a log line: what happened and what to do. They never
carry secret material; bodies quoted from remote systems are truncated and redacted first.
"""

from __future__ import annotations

import re


class RotatorError(Exception):
    """Base of every error rotator raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        request_id: str | None = None,
        status: int | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id
        self.status = status
        self.operation = operation

    def __str__(self) -> str:
        if self.request_id:
            return f"{self.message} (request_id {self.request_id})"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class TemporaryError(RotatorError):
    """A failure that may go away by itself; ``delay`` is the suggested wait in seconds."""

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        request_id: str | None = None,
        status: int | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id, status=status, operation=operation)
        self.delay = delay


class OutcomeUnknownError(RotatorError):
    """A request with a side effect was sent but its answer was lost.

    Never retry the request blindly: observe the remote system first.
    """


class PermanentError(RotatorError):
    """A failure that retrying will not fix."""


class LocalError(PermanentError):
    """A problem of this process alone: a missing variable, an unreadable file, a token that
    reaches another workspace. It fails this process (an exit code, a log line, not ready) and
    never changes the shared record, where it would stop every other process too."""


class SetupError(LocalError):
    """The configuration asks for something this host cannot give as written: a listen port
    another process holds, a listen address that names no host. A command exits 2 on it, as on
    a configuration error: the fix is the operator's (another value, or free the port)."""


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\"()\]]+)")
_KINDS = (
    ("ConnectTimeout", "the connection timed out"),
    ("ReadTimeout", "no answer within the timeout"),
    ("WriteTimeout", "sending timed out"),
    ("PoolTimeout", "no free connection within the timeout"),
    ("Timeout", "timed out"),
    ("SSL", "the TLS handshake failed"),
    ("RemoteDisconnected", "the server closed the connection without an answer"),
    # Ours, before anything was sent (a header value HTTP does not allow), not the peer's.
    ("LocalProtocolError", "the request could not be formed"),
    ("ProtocolError", "the connection broke off"),
)


def transport_cause(error: BaseException) -> str:
    """What went wrong on the wire, in words (``connection refused``, ``name or service not
    known``), not the HTTP library's nesting of wrapped exceptions and pool names."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        current = current.__cause__ or current.__context__
    found = _ERRNO.search(" ".join(str(e) for e in seen))
    if found:
        return found.group(1).strip().lower()
    names = " ".join(type(e).__name__ for e in seen) + " " + str(error)
    for marker, words in _KINDS:
        if marker in names:
            return words
    return "the connection failed"
