"""The one HMAC signature rotator speaks: the confirm hook checks it, notifications carry it.

``X-Rotator-Timestamp: <unix seconds>`` and ``X-Rotator-Signature: sha256=<hex>``, the hex being
HMAC-SHA256(key, ``f"{timestamp}."`` + body). Binding the timestamp into the signed bytes is what
lets the receiver refuse old and replayed calls.
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-Rotator-Timestamp"
SIGNATURE_HEADER = "X-Rotator-Signature"
SIGNATURE_PREFIX = "sha256="


def sign(key: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Rotator-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    raw_key = key.encode() if isinstance(key, str) else key
    digest = hmac.new(raw_key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_headers(key: str | bytes, body: bytes, now: float) -> dict[str, str]:
    """Both headers a sender adds to sign ``body`` at ``now``."""
    timestamp = int(now)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(key, timestamp, body)}
