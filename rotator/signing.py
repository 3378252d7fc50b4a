"""The HMAC signatures rotator speaks: the confirm hook checks one, notifications carry it,
and consumers answer probes with a fingerprint (``probe_fingerprint``).

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


#: The public label a consumer's probe fingerprint is computed over (``docs/probe-protocol.md``).
FINGERPRINT_LABEL = b"rotator-fingerprint-v1"
FINGERPRINT_CHARS = 32


def probe_fingerprint(secret: str) -> str:
    """What a consumer's probe answers as ``fingerprint`` for the secret it signs with:
    HMAC-SHA256 keyed by the secret's bytes (as ``user_hash`` and Messenger JWTs are keyed) over
    a fixed public label, first 32 hex characters. A PRF output on a label nothing else signs:
    it proves the consumer holds the material and helps forge neither a hash nor a JWT."""
    digest = hmac.new(secret.encode(), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
    return digest[:FINGERPRINT_CHARS]
