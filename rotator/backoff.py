"""How long to wait before trying again: one rule for every retry in rotator.

Exponential: ``base`` seconds after the first failure, doubling with each one, never more than
``cap``. Retries within one call (Vault, Intercom, webhooks) add full jitter (a uniform draw in
``[0, exponential]``, from the AWS Architecture Blog's "Exponential Backoff And Jitter") so that
many processes failing together do not retry together; the backoff persisted in a target's record
does not, as every process reads the same ``retry_at``.
"""

from __future__ import annotations

import random

#: No failure count makes the exponent larger than this (2**30 base is past any cap).
_MOST_DOUBLINGS = 30


def exponential(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 or more)."""
    doublings = min(max(0, failures - 1), _MOST_DOUBLINGS)
    return min(cap, base * (1 << doublings))


def full_jitter(
    failures: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """A uniform draw in ``[0, exponential(failures)]``."""
    return (rng or random).uniform(0.0, exponential(failures, base=base, cap=cap))
