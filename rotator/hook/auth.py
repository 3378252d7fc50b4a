"""Who may call the rollout-confirmation hook: a bearer token, or an HMAC-signed request.

Two ways in, either one enough:

* ``Authorization: Bearer <token>``, compared in constant time with the configured token.
* ``X-Rotator-Timestamp: <unix seconds>`` and ``X-Rotator-Signature: sha256=<hex>``, where the hex
  is HMAC-SHA256(key, ``f"{timestamp}."`` + body). The signature is checked first, so only a
  holder of the key learns anything more specific than "invalid"; then the timestamp must be
  within ``window`` seconds of our clock, in either direction; then the signature must not have
  been used already (a replay). Senders use ``rotator.signing``.

A request with an ``Authorization`` header is judged by that header alone: a wrong token is not
forgiven by a signature beside it, which would double the guesses per request.

Replay protection keeps every accepted signature until its timestamp leaves the window: after
that the window check rejects it anyway, so the cache never needs to remember more than one
window's worth. Only validly signed requests enter it, so only a holder of the key can fill it;
when it is full it refuses new signed calls (fail closed) rather than forget one that could then
be replayed. A signature whose request could not be completed (a temporary failure behind the
hook) is released, so the sender's retry of the very same request is not taken for a replay.

Nothing here logs or echoes a credential; a rejection carries a reason code and a message fit
for the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rotator.redaction import SecretValue
from rotator.signing import SIGNATURE_HEADER, SIGNATURE_PREFIX, TIMESTAMP_HEADER, sign

#: Enough for a burst of retries from many senders inside one 5-minute window.
REPLAY_CAPACITY = 10_000

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# Unix seconds, a sane number of digits: a 40-digit "timestamp" is not worth an int() call.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class HookCredentials:
    """What the hook accepts; both ``None`` means the hook is not configured."""

    bearer_token: SecretValue | None
    hmac_key: SecretValue | None

    @property
    def configured(self) -> bool:
        return self.bearer_token is not None or self.hmac_key is not None


class Rejected(Exception):
    """The request is refused; ``status`` is 401 (credentials) or 503 (replay cache full)."""

    def __init__(self, reason: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


class ReplayCache:
    """Signatures already accepted, each kept until its ``expires_at`` (clock seconds)."""

    def __init__(self, capacity: int = REPLAY_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def claim(self, signature: str, expires_at: float, now: float) -> bool:
        """Record ``signature``; ``False`` if it was already recorded (a replay).

        Raises ``Rejected`` (503) when the cache is full of live entries.
        """
        with self._lock:
            expiry = self._seen.get(signature)
            if expiry is not None and expiry >= now:
                return False
            if len(self._seen) >= self.capacity:
                # Purge only when full: O(n) once per fill, nothing per request otherwise.
                self._seen = {s: e for s, e in self._seen.items() if e >= now}
                if len(self._seen) >= self.capacity:
                    raise Rejected(
                        "replay_cache_full",
                        "too many signed calls in the signature window; retry later",
                        status=503,
                    )
            self._seen[signature] = expires_at
            return True

    def release(self, signature: str) -> None:
        """Forget ``signature`` so the same request may be sent again (after a failure)."""
        with self._lock:
            self._seen.pop(signature, None)

    def __len__(self) -> int:
        return len(self._seen)


class HookAuthenticator:
    """Checks one request's credentials against ``HookCredentials``."""

    def __init__(
        self,
        credentials: HookCredentials | Callable[[], HookCredentials],
        *,
        window: float,
        clock: Callable[[], float],
        replay: ReplayCache | None = None,
    ) -> None:
        # A callable is asked at every request: the daemon can start before Vault answers and
        # load the credentials from it later.
        self._credentials = credentials
        self.window = window
        self._clock = clock
        self.replay = replay if replay is not None else ReplayCache()

    @property
    def credentials(self) -> HookCredentials:
        given = self._credentials
        return given if isinstance(given, HookCredentials) else given()

    def check_bearer(self, authorization: str) -> None:
        """Accept ``Authorization: Bearer <token>`` with the configured token, else raise."""
        token = self.credentials.bearer_token
        scheme, _, value = authorization.partition(" ")
        if token is None or scheme.lower() != "bearer" or not value.strip():
            raise _invalid()
        if not _same(value.strip(), token.reveal()):
            raise _invalid()

    def check_signature(self, timestamp: str | None, signature: str | None, body: bytes) -> str:
        """Accept a fresh, unused signature of ``body``; return it (for ``release``), else raise."""
        key = self.credentials.hmac_key
        if key is None or not timestamp or not signature:
            raise _invalid()
        digest = signature.strip().removeprefix(SIGNATURE_PREFIX).lower()
        timestamp = timestamp.strip()
        # Shape checks first: they reveal nothing about the key, and keep int() and the HMAC
        # away from arbitrary header text.
        if not signature.strip().startswith(SIGNATURE_PREFIX) or not _HEX_DIGEST.fullmatch(digest):
            raise _invalid()
        if not _TIMESTAMP.fullmatch(timestamp):
            raise _invalid()
        expected = sign(key.reveal(), int(timestamp), body).removeprefix(SIGNATURE_PREFIX)
        if not hmac.compare_digest(digest, expected):
            raise _invalid()
        now = self._clock()
        sent = int(timestamp)
        if abs(now - sent) > self.window:
            raise Rejected(
                "signature_expired",
                f"the signature's timestamp is more than {self.window:g} seconds from the "
                "server's clock; sign each call when sending it",
            )
        if not self.replay.claim(digest, sent + self.window, now):
            raise Rejected("signature_replayed", "this signature was already used")
        return digest

    def release(self, digest: str) -> None:
        self.replay.release(digest)


def _same(given: str, expected: str) -> bool:
    # Comparing digests rather than the values keeps the token's length out of the timing too.
    # WSGI hands headers over as latin-1 text: encoding back gives the bytes that were sent.
    return hmac.compare_digest(
        hashlib.sha256(given.encode("latin-1", "replace")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def _invalid() -> Rejected:
    return Rejected("invalid_credentials", "the credentials are not valid for this hook")


__all__ = [
    "REPLAY_CAPACITY",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "HookAuthenticator",
    "HookCredentials",
    "Rejected",
    "ReplayCache",
]
