"""What rotator accepts for each duration and hook credential, and why each bound is there.

A value outside its range is refused when the configuration is read, naming the TOML key and
the range, rather than accepted and left to fail later: a ``grace_period`` of ``10000000d`` once
passed ``check-config``, then raised ``OverflowError`` after the new secret was stored, and the
rotation stayed stuck. Every range is closed, so TOML's ``inf`` and ``nan`` are refused too.

    key                           range          why
    ----------------------------  -------------  ---------------------------------------------
    vault.timeout                 100ms .. 5m    0 fails every request; longer stalls a pass
    notify.timeout                100ms .. 5m    the same, for one webhook delivery
    notify.flush_timeout          0 .. 5m        0: a one-shot command does not wait
    server.signature_window       1s .. 1h       wider makes a stolen signature live longer
    daemon.reconcile_interval     1s .. 24h      0 spins; a day is the longest useful pause
    daemon.sweep_interval         1s .. 24h      how late another process's write is seen
    daemon.lease_ttl              1s .. 1h       how long others wait out a silent holder
    targets.schedule (interval)   1s .. 1825d    five years; the demo rotates every few seconds
    targets.grace_period          0 .. 365d      a year of two live secrets is plenty; 0 and a
                                                 grace longer than the interval are warnings
    probes.timeout                100ms .. 30s   one consumer instance's answer
    probes.deadline               200ms .. 1m    a target's whole probe round: a pass waits on it
    probes.spacing                0 .. 1h        least time between rounds counted in one streak

A TOML boolean is refused wherever a duration or a count belongs: pydantic would read ``false`` as
0 and ``true`` as 1, so ``reconcile_interval = false`` would slip under the bound that refuses
``"0s"``. A cron schedule must fire within the interval's upper bound (1825d) of now: ``0 0 31 2
*`` (31 February) never does, and the secret would never rotate.

Refused: what cannot work (a 0 timeout, a 0 interval that would spin) or would weaken the hook's
authentication. Warned about (``rotator.config.advice``): what works as written but is probably not
meant, such as ``grace_period = "0s"``, which deletes the old secret as soon as the new one is
stored (what a benchmark wants, not a production service).

Hook credentials (``[server] hook_token_*``, ``hook_hmac_key_*``) need at least
``MIN_CREDENTIAL_CHARS`` characters and no whitespace around them: a 5-character token is
guessed, and a value with a stray newline from ``echo`` never matches what a caller sends.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BeforeValidator

from rotator.durations import format_duration, parse_duration

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

VAULT_TIMEOUT = (0.1, 5 * MINUTE)
NOTIFY_TIMEOUT = (0.1, 5 * MINUTE)
FLUSH_TIMEOUT = (0.0, 5 * MINUTE)
SIGNATURE_WINDOW = (1.0, HOUR)
RECONCILE_INTERVAL = (1.0, DAY)
SWEEP_INTERVAL = (1.0, DAY)
LEASE_TTL = (1.0, HOUR)
SCHEDULE_INTERVAL = (1.0, 1825 * DAY)
GRACE_PERIOD = (0.0, 365 * DAY)
PROBE_TIMEOUT = (0.1, 30.0)
PROBE_DEADLINE = (0.2, MINUTE)
PROBE_SPACING = (0.0, HOUR)
WINDOW_DURATION = (MINUTE, 7 * DAY)

MIN_CREDENTIAL_CHARS = 16


def check_seconds(value: Any, low: float, high: float) -> Any:
    """``value`` (a duration text or a number) as seconds, if within ``[low, high]``."""
    if isinstance(value, bool):
        # pydantic would read `false` as 0 s (under every lower bound) and `true` as 1 s.
        raise ValueError(f'must be a duration such as "30s" or "24h", not {str(value).lower()}')
    if not isinstance(value, str | int | float):
        return value  # not a duration at all: pydantic says which type it wants
    allowed = f"must be from {describe(low)} to {describe(high)}"
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except ValueError as e:
        raise ValueError(f"{e}; {allowed}") from None
    # NaN fails every comparison, so it is refused here too.
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError(f"{allowed}, not {value!r}")
    return seconds


def not_boolean(value: Any) -> Any:
    """``value`` unchanged, unless it is a TOML boolean where a number belongs (read as 0 or 1)."""
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, not {str(value).lower()}")
    return value


def describe(seconds: float) -> str:
    """A bound as people write it: ``0s``, ``100ms``, ``5m``, ``1825d (5 years)``."""
    if seconds == 0:
        return "0s"
    text = format_duration(seconds)
    if seconds >= 365 * DAY:
        whole_days = f"{round(seconds / DAY)}d"
        years = round(seconds / (365 * DAY))
        return f"{whole_days} ({years} year{'s' if years > 1 else ''})"
    return text


def within(bounds: tuple[float, float]) -> BeforeValidator:
    """For ``Annotated[float, within(...)]``: a duration held as seconds, refused outside
    ``bounds``."""
    low, high = bounds
    return BeforeValidator(lambda value: check_seconds(value, low, high))


def credential_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot serve as the hook's ``what`` (a token or key), without quoting it."""
    if value != value.strip():
        return f"the {what} starts or ends with whitespace (a stray newline?); remove it"
    if len(value) < MIN_CREDENTIAL_CHARS:
        return (
            f"the {what} has {len(value)} characters; use at least {MIN_CREDENTIAL_CHARS} "
            "(e.g. openssl rand -hex 32)"
        )
    return None
