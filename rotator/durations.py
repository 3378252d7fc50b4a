"""Durations as people write them in config and on the command line: ``90m``, ``24h``, ``20ms``.

A bare number is seconds. Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; several may be
combined (``1h30m``). The result is seconds as a finite float; errors are ``ValueError`` with a
message that says what is accepted. What range a setting allows is the caller's business
(``rotator.config.bounds``).

``shifted`` moves a datetime by a duration without ever raising ``OverflowError``: persisted
times and durations (a damaged record, a server's odd ``Retry-After``) must not crash a pass.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_FORMS = "a number of seconds or amounts with units ms, s, m, h, d, w (e.g. 20ms, 90m, 1h30m, 30d)"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ``ValueError`` for anything else, negative values included."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise ValueError(f"empty duration; expected {_FORMS}")
    try:
        value = float(cleaned)
    except ValueError:
        pass
    else:
        if not 0 <= value < float("inf"):  # also refuses NaN
            raise ValueError(f"invalid duration {text!r}; expected {_FORMS}")
        return value
    position = 0
    total = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned) or position == 0:
        raise ValueError(f"invalid duration {text!r}; expected {_FORMS}")
    if not math.isfinite(total):  # a 400-digit amount is infinite as a float
        raise DurationTooLong(f"duration {text[:20]!r}... is too long")
    return total


class DurationTooLong(ValueError):
    """A well-formed duration too long to be held as seconds: out of any setting's range."""


# More than datetime's whole range (years 1 to 9999), and well within timedelta's: a longer
# shift saturates anyway, and clamping first keeps timedelta() itself from overflowing.
_WIDEST = 10_000 * 366 * 86400.0


def shifted(moment: datetime, by: timedelta | float) -> datetime:
    """``moment + by`` (seconds, or a timedelta), held at datetime's first or last instant
    instead of raising ``OverflowError``; a NaN shift counts as none."""
    seconds = by.total_seconds() if isinstance(by, timedelta) else by
    if math.isnan(seconds):
        return moment
    seconds = max(-_WIDEST, min(_WIDEST, seconds))
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        if seconds > 0:
            return datetime.max.replace(tzinfo=moment.tzinfo)
        return datetime.min.replace(tzinfo=moment.tzinfo)


def format_duration(seconds: float) -> str:
    """The readable form: ``86400`` -> ``1d``, ``0.02`` -> ``20ms``, ``30d`` stays ``30d``
    (weeks only for whole weeks: nobody writes a month as ``4w2d``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    remaining = round(seconds)
    parts = []
    week = int(_UNIT_SECONDS["w"])
    for unit in ("w", "d", "h", "m", "s") if remaining % week == 0 else ("d", "h", "m", "s"):
        size = int(_UNIT_SECONDS[unit])
        amount, remaining = divmod(remaining, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
