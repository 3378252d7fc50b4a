"""rotator's error tree.

Every failure that crosses a module boundary is one of these; the libraries' own exceptions
(httpx, hvac) are wrapped ``from`` the original inside their adapter and never escape it::

    RotatorError                      .message, .request_id, .status, .operation
    ├── TemporaryError                retrying later may help; .delay suggests when (seconds)
    ├── OutcomeUnknownError           a side effect may or may not have happened: observe the
    │                                 world (e.g. list secrets) before doing anything else
    └── PermanentError                retrying will not help: an operator must act
        └── LocalError                only this process is wrong (a missing variable, another
                                      workspace's token): it fails, the shared record is untouched

Adapters subclass these (``rotator.intercom.errors`` for Intercom). Messages are written for
the operator who reads them in ``status`` or a log line: what happened and what to do. They never
carry secret material; bodies quoted from remote systems are truncated and redacted first.
"""

from __future__ import annotations


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
