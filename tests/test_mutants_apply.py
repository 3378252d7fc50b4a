"""The mutation check of issue 9 (``tests/simulation/mutants.py``) stays meaningful: each of its
reverts still finds, exactly once, the fixed code it puts back the old way. A refactor that moves
the code would otherwise turn the check into a run of unmutated code that "finds nothing"."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from simulation.mutants import MUTANTS, ROOT, mutate


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_every_mutant_reverts_code_that_is_there(name: str, tmp_path: Path) -> None:
    """Each mutant's edits apply to today's package exactly once, and change it."""
    shutil.copytree(ROOT / "rotator", tmp_path / "rotator")
    mutate(tmp_path, MUTANTS[name])  # SystemExit when a text is missing or found twice
    for relative, now, before in MUTANTS[name]:
        text = (tmp_path / "rotator" / relative).read_text()
        assert before in text
        assert now != before
