"""bench/table.py's ``merged``: rows measured alone replace theirs in bench/RESULTS.md, and the
line saying when they were measured replaces the earlier one about the same rows (it once piled
up, each describing a table that was no longer there)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "bench_table", Path(__file__).resolve().parents[1] / "bench" / "table.py"
)
assert _SPEC is not None
assert _SPEC.loader is not None
table = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(table)

PREVIOUS = """\
# rotator benchmarks

Run 2026-11-25 01:29 UTC on vm; each figure the median of 11 runs.

| measure | figure | goal | |
|---|---|---|---|
| a. rotation | 400 ms | x | MISSED |
| d. thousand | 15 s | y | met |

## What bounds the goals it misses

- old notes
"""


def _fresh(figure: str, when: str) -> str:
    return (
        f"Run {when} on vm\n\n| measure | figure | goal | |\n|---|---|---|---|\n"
        f"| a. rotation | {figure} | x | met |\n\n## What bounds the goals it misses\n\n- new\n"
    )


def test_rows_measured_again_replace_theirs_and_their_dated_line():
    """Measuring rows a twice leaves one line about them (the latest), row d and the first run's
    header untouched, and the latest notes."""
    once = table.merged(PREVIOUS, _fresh("300 ms", "2026-11-30 14:28 UTC"), {"a"})
    twice = table.merged(once, _fresh("250 ms", "2026-11-30 17:13 UTC"), {"a"})
    lines = twice.splitlines()
    assert [x for x in lines if x.startswith("Rows a re-measured")] == [
        "Rows a re-measured alone: 2026-11-30 17:13 UTC on vm"
    ]
    assert "Run 2026-11-25 01:29 UTC on vm; each figure the median of 11 runs." in lines
    assert any(x.startswith("| a. rotation | 250 ms") for x in lines)
    assert "| d. thousand | 15 s | y | met |" in lines
    assert "- new" in lines
    assert "- old notes" not in lines
    assert "\n\n\n" not in twice
