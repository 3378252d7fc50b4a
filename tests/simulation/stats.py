"""Counts of what the simulation exercised, for its summary line and the issue note."""

from __future__ import annotations

from collections import Counter

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
    )
    return ", ".join(f"{key} {COUNTS[key]:,}" for key in keys)
