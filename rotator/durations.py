"""Durations as people write them in config and on the command line: ``90m``, ``24h``, ``20ms``.

A bare number is seconds. Units: ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; several may be
combined (``1h30m``). The result is seconds as a float; errors are ``ValueError`` with a message
that says what is accepted.
"""

from __future__ import annotations

import re

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
    return total


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
