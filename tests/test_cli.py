"""The command line as users meet it: real subprocesses of the installed ``rotator`` script."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rotator.intercom import IntercomClient, Platforms

VERBS = [
    "run",
    "reconcile",
    "rotate-now",
    "confirm",
    "status",
    "check-config",
    "emulate-intercom",
    "demo",
]
ROTATOR = [sys.executable, "-m", "rotator"]


def rotator(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ROTATOR, *args], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def test_help_lists_every_verb_of_the_product():
    """`rotator --help` names each verb users rely on, and how configuration is found."""
    result = rotator("--help")
    assert result.returncode == 0
    for verb in VERBS:
        assert re.search(rf"^\s+{re.escape(verb)}\s", result.stdout, re.MULTILINE), verb
    assert "ROTATOR_CONFIG" in result.stdout
    assert "exit codes" in result.stdout


def test_the_console_script_is_installed():
    """The `rotator` console script runs (pip installed it from pyproject.toml)."""
    script = Path(sys.executable).with_name("rotator")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("rotator ")


@pytest.mark.parametrize("verb", VERBS)
def test_each_verb_has_help(verb):
    """Every verb explains itself with --help."""
    result = rotator(verb, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: rotator " + verb)


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("rotate-now",),
        ("status", "--jsn"),
        ("emulate-intercom", "--port", "http"),
    ],
)
def test_bad_usage_exits_2_without_a_traceback(args):
    """A mistake on the command line is explained, exit 2, no traceback."""
    result = rotator(*args)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert "usage: rotator" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--token", "nocolon"), "TOKEN:SCOPES"),
        (("--token", "t:admin"), "unknown scope 'admin'"),
        (("--faults", "429=2"), "from 0 to 1"),
        (("--port", "70000"), "from 0 to 65535"),
    ],
)
def test_emulator_arguments_are_validated(args, message):
    """Bad --token, --faults or --port values are refused with their reason."""
    result = rotator("emulate-intercom", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert_no_traceback(result)


def test_a_corrupt_state_file_exits_2(tmp_path):
    """An unreadable --state file is refused at start, with the file named."""
    state = tmp_path / "state.json"
    state.write_text("not json")
    result = rotator("emulate-intercom", "--port", "0", "--state", str(state))
    assert result.returncode == 2
    assert str(state) in result.stderr
    assert_no_traceback(result)


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with subprocess.Popen(
        [*ROTATOR, "emulate-intercom", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ROTATOR_LOG_LEVEL": "warning"},
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # waits for the server to be up
            match = re.search(r"listening on (http://\S+)", line)
            assert match, f"no listening line: {line!r}"
            yield process, match.group(1)
        finally:
            if process.poll() is None:
                process.kill()
            process.communicate()


def test_emulator_serves_and_stops_cleanly_on_sigterm():
    """The CLI emulator answers the client, then exits 0 on SIGTERM."""
    with emulator_process("--token", "cli-token-123:read,write") as (process, url):
        client = IntercomClient("cli-token-123", base_url=url)
        created = client.create_secret("cli", Platforms(web=True))
        assert [s.id for s in client.list_secrets()] == [created.info.id]
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_emulator_state_survives_a_restart(tmp_path):
    """With --state, a second emulator process lists what the first created."""
    state = tmp_path / "intercom.json"
    with emulator_process("--state", str(state)) as (process, url):
        with IntercomClient("emulator-token", base_url=url) as client:
            created = client.create_secret("persisted", Platforms(ios=True))
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    with emulator_process("--state", str(state)) as (process, url):
        with IntercomClient("emulator-token", base_url=url) as client:
            assert [s.id for s in client.list_secrets()] == [created.info.id]
        process.terminate()
        assert process.wait(timeout=10) == 0
