"""``pipx install .`` gives a working ``rotator``, as the README's quick start says.

In a clean virtual environment made for the test, pipx (pinned) is installed from the package
index, then ``pipx install <this checkout>`` builds rotator's wheel and installs it, with pipx's
home, bin and man directories in a temporary directory: nothing of the developer's pipx is
touched or used. The installed ``rotator`` then runs ``--version`` and ``check-config``. It
needs the package index (as CI has); pip's cache makes it faster where there is one.
"""

from __future__ import annotations

import os
import subprocess
import time
import venv
from pathlib import Path

import pytest

import rotator

REPO = Path(__file__).resolve().parents[1]
#: pipx as users install it; pinned, so a new pipx release cannot break CI unannounced.
PIPX = "pipx==1.18.4"

CONFIG = """\
[vault]
address = "https://vault.example.com:8200"

[[targets]]
name = "web"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "intercom/identity-verification/web"
"""


def run(command: list[str | Path], env: dict[str, str], timeout: float = 300) -> str:
    """``command``'s output; run outside the checkout, so nothing imports rotator from it."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=env["PIPX_HOME"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_pipx_install_gives_a_working_rotator(tmp_path):
    """`pipx install <checkout>` in a clean environment installs a `rotator` that prints this
    checkout's version and validates a configuration (check-config, exit 0), in under 90 s."""
    started = time.monotonic()
    venv.EnvBuilder(with_pip=True).create(tmp_path / "venv")
    python = tmp_path / "venv" / "bin" / "python"
    # Only what a user's shell would have: none of this test run's own virtual environment.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"} and not key.startswith("PIPX_")
    }
    env |= {
        "PATH": os.pathsep.join([str(tmp_path / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    (tmp_path / "pipx").mkdir()
    run([python, "-m", "pip", "install", "--quiet", PIPX], env)
    run([python, "-m", "pipx", "install", REPO], env)
    installed = tmp_path / "bin" / "rotator"
    assert installed.exists(), "pipx put no rotator in PIPX_BIN_DIR"

    assert run([installed, "--version"], env).strip() == f"rotator {rotator.__version__}"
    config = tmp_path / "rotator.toml"
    config.write_text(CONFIG)
    secrets = {"INTERCOM_TOKEN": "t", "VAULT_TOKEN": "t"}
    checked = run([installed, "--config", config, "check-config"], env | secrets)
    assert "web: https://api.intercom.io" in checked
    config.write_text(CONFIG.replace("secret_name", "secret_nmae"))
    refused = subprocess.run(
        [installed, "--config", config, "check-config"],
        capture_output=True,
        text=True,
        env=env | secrets,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "secret_nmae: unknown key" in refused.stderr
    # The installed copy is pipx's own, not this checkout's.
    location = run(
        [
            tmp_path / "pipx" / "venvs" / "rotator" / "bin" / "python",
            "-c",
            "import rotator; print(rotator.__file__)",
        ],
        env,
    )
    assert not Path(location.strip()).is_relative_to(REPO)
    elapsed = time.monotonic() - started
    assert elapsed < 90, f"took {elapsed:.0f}s"
