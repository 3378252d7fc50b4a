"""Counts of what the simulation exercised, for its summary line and the issue note, and the
count the mutation check reads."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

#: Process-wide: every run of the simulation in this process adds to it.
COUNTS: Counter[str] = Counter()


def summary() -> str:
    keys = (
        "examples",
        "steps",
        "calls",
        "crashes",
        "faults",
        "deletes",
        "rotations",
        "emergencies",
        "confirmations",
        "adoptions",
        "restores",
        "blocks",
        "resumes",
        "named",
        "probes",
        "fleet",
        "stalls",
        "consumer confirmations",
        "named deletes",
        "aborts asked",
        "abort refusals",
        "aborts recorded",
        "aborts served (restore)",
        "aborts served (creating)",
        "aborts refused when served",
        "back-outs completed",
        "abandoned deletes",
        "quiet ticks",
        "liveness checks",
        "window waits (idle)",
        "window waits (awaiting_rollout)",
        "emergency deletes outside a window",
        "window openings under a lease",
        "window openings under a lease (crashed)",
    )
    return ", ".join(f"{key} {COUNTS[key]:,}" for key in keys)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """For the mutation check (``simulation/mutants.py``): how many examples it took to find
    the first violation, before Hypothesis shrinks it."""
    try:
        yield
    except AssertionError:
        report = os.environ.get("ROTATOR_SIMULATION_REPORT")
        if report and not Path(report).exists():
            Path(report).write_text(f"{COUNTS['examples']}\n")
        raise
