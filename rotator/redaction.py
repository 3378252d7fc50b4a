"""Keeping secret material out of everything that is not Vault.

Two tools, used together:

* ``SecretValue`` wraps a secret (Intercom material, a bearer token). Its ``repr``/``str``/
  ``format`` never show it, it refuses to be pickled (so it cannot end up in a job store or a
  multiprocessing queue by accident), and ``reveal()`` is the single, greppable place where the
  value comes out: at the moment it is sent to Intercom or written to Vault.
* A process-wide registry of every secret value this process has seen. ``redact_text`` replaces
  any of them, plus bearer tokens, ``"secret": "..."`` JSON members and the user and password of
  URLs (``hide_userinfo``), in text that is about to
  leave the process (log lines, error messages quoting a remote body). The structlog processor in
  ``rotator.logs`` runs every log event through it.

The registry only grows: forgetting a value would let it leak later, and a daemon sees a few
values per rotation, so memory is not a concern.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from typing import NoReturn

REDACTED = "[REDACTED]"

# Values shorter than this are not registered: replacing every "abc" in logs would destroy them
# and such a value is not a secret anyone should use.
_MIN_LENGTH = 8

_lock = threading.Lock()
_known: set[str] = set()
# Replaced, never mutated, so readers in other threads can iterate without the lock.
_lengths_desc: tuple[int, ...] = ()
# Values made only of these characters are found by scanning word-like runs (fast: a set lookup
# per window); any other value is searched for with a plain substring test.
_WORD = re.compile(r"[A-Za-z0-9_\-]+")
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_odd: tuple[str, ...] = ()

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_JSON_SECRET = re.compile(
    r"(?i)(\"(?:secret|token|password|access_token|client_secret|secret_id)\"\s*:\s*\")"
    r"[^\"]*(\")"
)


# The user and password of a URL (``https://user:pass@host``): up to the last ``@`` before the
# path, since an unencoded ``@`` in a password is still part of it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s'\"]+@")


def hide_userinfo(text: str) -> str:
    """``text`` with the user and password of every URL in it shown as ``***``: a base_url or
    Vault address may carry them, and a URL is printed and logged freely."""
    return _USERINFO.sub(r"\1***@", text)


def register(value: str) -> None:
    """Remember ``value`` so ``redact_text`` removes it wherever it appears."""
    global _lengths_desc, _odd  # noqa: PLW0603 - the registry is process-wide by design
    if len(value) < _MIN_LENGTH:
        return
    with _lock:
        if set(value) <= _WORD_CHARS:
            _known.add(value)
            if len(value) not in _lengths_desc:
                _lengths_desc = tuple(sorted({*_lengths_desc, len(value)}, reverse=True))
        elif value not in _odd:
            _odd = (*_odd, value)


def redact_text(text: str) -> str:
    """Return ``text`` with every known secret, bearer token, JSON secret member and URL
    password removed."""
    text = hide_userinfo(_BEARER.sub(r"\1" + REDACTED, text))
    text = _JSON_SECRET.sub(r"\1" + REDACTED + r"\2", text)
    if _known:
        text = _WORD.sub(_redact_run, text)
    for value in _odd:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _redact_run(match: re.Match[str]) -> str:
    run = match.group(0)
    if run in _known:
        return REDACTED
    lengths = _lengths_desc
    if not lengths or len(run) <= lengths[-1]:
        return run
    # A secret glued to other word characters: slide a window of each known length.
    for length in lengths:
        for start in range(len(run) - length + 1):
            if run[start : start + length] in _known:
                return REDACTED
    return run


def truncate(text: str, limit: int = 300) -> str:
    """Shorten ``text`` for a log line or error message, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def scrub(text: str, limit: int = 300) -> str:
    """Redact, then truncate: what to do with any text quoted from a remote system."""
    return truncate(redact_text(text), limit)


class SecretValue:
    """A secret string that does not show itself.

    >>> s = SecretValue("s3cr3t-material-0123456789")
    >>> s
    SecretValue('[REDACTED]')
    >>> f"{s}"
    "SecretValue('[REDACTED]')"
    >>> s.reveal()
    's3cr3t-material-0123456789'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            # Never echo the value: it may be the secret itself, just mistyped.
            raise ValueError("a secret must be a non-empty string")
        self._value = value
        register(value)

    def reveal(self) -> str:
        """Return the secret. Call it only where the value is sent to Intercom or to Vault."""
        return self._value

    def fingerprint(self) -> str:
        """A short, non-reversible tag that tells two secrets apart in logs and status."""
        return "sha256:" + hashlib.sha256(self._value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretValue):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    # Equal values must hash equal; hashing the fingerprint keeps the raw value out of hash().
    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretValue cannot be pickled: secret material stays in memory")

    def __copy__(self) -> SecretValue:
        return self

    def __deepcopy__(self, memo: object) -> SecretValue:
        return self
