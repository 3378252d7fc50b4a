"""How long a 429 (or 5xx) answer asks us to wait: ``Retry-After``, else ``X-RateLimit-Reset``.

Header text comes from a server we do not control, and once crashed a pass: ``²`` passes
``str.isdigit()`` but not ``float()``, a 400-digit number is ``inf`` as a float, and ``inf`` or a
date in year 9999 overflowed the ``timedelta`` that schedules the retry. So the parse is strict
and the result bounded:

* ``Retry-After: <seconds>`` and ``X-RateLimit-Reset: <unix seconds>`` are ASCII digits only, at
  most ``MAX_DIGITS`` of them (a larger number is no promise anyone can keep);
* ``Retry-After: <HTTP-date>`` is printable ASCII of at most ``MAX_DATE_CHARS``, read by the
  standard library; a date without a zone is taken as UTC, as HTTP dates are;
* anything else is ignored (``None``): the caller falls back to its own backoff;
* whatever is read is held within ``[0, cap]`` before anyone does arithmetic with it; a date in
  the past means "now" (0).

``X-RateLimit-Reset`` and a ``Retry-After`` date are times on the server's clock. Ours may
disagree (a host whose clock drifted): read against ours, a reset a minute ahead would hold
rotations a minute too long, or not at all. The answer's own ``Date`` header is the server's
clock when it answered; when ours disagrees with it by more than its one-second precision, the
wait is measured from it instead, unless they disagree by more than ``MAX_SKEW``: clocks drift by
seconds or minutes, so a ``Date`` in 1970 or 9999 (a proxy's, or a broken server's) says
nothing about Intercom's clock, and read as its clock it would turn a 30-second reset into a
day's hold, or into none at all and a storm of 429s.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import UTC

#: Seconds: no server's wait is taken longer than this (the reconciler's own backoff limit).
LONGEST_WAIT = 86400.0
#: Twelve digits of seconds is 31,000 years: anything longer is not a number we can act on.
MAX_DIGITS = 12
#: "Sun, 06 Nov 1994 08:49:37 GMT" is 29 characters; the obsolete forms are no longer.
MAX_DATE_CHARS = 40

_SECONDS = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
_DATE = re.compile(rf"[\x20-\x7e]{{1,{MAX_DATE_CHARS}}}")
#: asctime's form ends with the time and the year, no zone: "Sun Nov  6 08:49:37 1994".
_ASCTIME_END = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2} +[0-9]{4}$")


def server_delay(
    headers: Mapping[str, str], *, now: float, cap: float = LONGEST_WAIT
) -> float | None:
    """Seconds the server asked us to wait, in ``[0, cap]``, or ``None`` if it did not say so
    in a form we accept. ``now`` is Unix time (ours: the answer's ``Date`` stands in for it when
    they disagree); ``headers`` is case-insensitive, like httpx's."""
    now = _server_now(headers.get("Date"), now)
    delay = _retry_after(headers.get("Retry-After"), now)
    if delay is None:
        delay = _reset(headers.get("X-RateLimit-Reset"), now)
    if delay is None:
        return None
    # Held within [0, cap] before anyone adds it to a time; NaN (never expected) counts as 0.
    return min(cap, delay) if delay > 0 else 0.0


#: Seconds our clock may differ from an answer's ``Date`` before the server's is trusted
#: instead (``Date`` has whole seconds: up to one apart is agreement).
SKEW_TOLERANCE = 2.0
#: Seconds beyond which a ``Date`` is not taken as the server's clock, but as a broken header.
MAX_SKEW = 3600.0


def _server_now(date: str | None, now: float) -> float:
    """``now``, or the answer's ``Date`` when ours disagrees with it by more than
    ``SKEW_TOLERANCE`` and no more than ``MAX_SKEW`` (half a second added: ``Date`` is
    truncated to the second)."""
    said = _http_date(date)
    if said is None or not SKEW_TOLERANCE < abs(said - now) <= MAX_SKEW:
        return now
    return said + 0.5


def _http_date(value: str | None) -> float | None:
    """Unix time of an HTTP-date, strictly (``None`` for anything else)."""
    text = (value or "").strip()
    if not _DATE.fullmatch(text):
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        # "-0000" (UTC, no zone said) or asctime's form (GMT by definition) are UTC. Any other
        # zone the library does not know ("CET", "BST") comes back naive as well: taken as UTC,
        # a server's local time an hour off read as a drift of ours, and its reset as past.
        if not (text.endswith("-0000") or _ASCTIME_END.search(text)):
            return None
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None


def _retry_after(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    text = value.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    when = _http_date(text)
    return None if when is None else when - now


def _reset(value: str | None, now: float) -> float | None:
    text = (value or "").strip()
    return float(text) - now if _SECONDS.fullmatch(text) else None
