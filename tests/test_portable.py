"""The project knows no machine's layout: the contract is found relative to the clone, and no
tracked file names a path of a development machine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from _contract import CONTRACT_NAME, REPO, contract_candidates, find_contract

# Home and work directories of development machines, and this project's own scratch trees (the
# brackets keep this file from naming them itself).
_MACHINE_PATHS = re.compile(r"/(?:wor[k]|roo[t]|hom[e]|User[s])/|/tm[p]/(?:wt-|pytest-)")


def test_the_contract_is_looked_for_only_where_the_clone_says():
    """$INTERCOM_CONTRACT first, then <repository>/../shared/contracts/: no absolute path."""
    beside = REPO.parent / "shared" / "contracts" / CONTRACT_NAME
    assert contract_candidates({}) == [beside]
    assert contract_candidates({"INTERCOM_CONTRACT": "spec.yaml"}) == [Path("spec.yaml"), beside]


def test_intercom_contract_names_the_file_to_use(tmp_path):
    """A contract named by $INTERCOM_CONTRACT is used; a missing one falls through to the
    clone's neighbour, and to None (the contract tests skip) when that is absent too."""
    spec = tmp_path / "contract.yaml"
    spec.write_text("openapi: 3.0.3\n")
    assert find_contract({"INTERCOM_CONTRACT": str(spec)}) == spec
    missing = tmp_path / "missing.yaml"
    beside = REPO.parent / "shared" / "contracts" / CONTRACT_NAME
    expected = beside if beside.is_file() else None
    assert find_contract({"INTERCOM_CONTRACT": str(missing)}) == expected


def test_no_tracked_file_names_a_path_of_a_development_machine():
    """Code, tests, scripts and docs name no absolute path of the machine they were written on
    (container paths such as /opt/rotator are the image's own layout, not a machine's)."""
    git = shutil.which("git")
    listed = (
        subprocess.run(
            [git, "ls-files", "-z"], cwd=REPO, capture_output=True, check=False, text=True
        )
        if git
        else None
    )
    if listed is None or listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    found = []
    for name in filter(None, listed.stdout.split("\0")):
        path = REPO / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary, or deleted in the working tree
        for number, line in enumerate(text.splitlines(), 1):
            if _MACHINE_PATHS.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
