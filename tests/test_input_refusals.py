"""Bad and weak input at the command line, as users meet it: real ``rotator`` subprocesses.

Each refusal exits 2 with a message naming the key, variable or option and what is allowed,
changes nothing and prints no traceback; each warning leaves the exit code at 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

ROTATOR = [sys.executable, "-m", "rotator"]
HOOK_TOKEN = "refusals-hook-token-0123456789"

CONFIG = """\
[vault]
address = "{vault}"
state_path = "{state}"
[server]
listen = "127.0.0.1:0"
{server}
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "{path}"
{target}
"""


def write_config(
    tmp_path: Path, vault_settings, intercom: str, *, server: str = "", target: str = ""
) -> Path:
    config = tmp_path / f"rotator-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(
        CONFIG.format(
            vault=vault_settings.address,
            state=vault_settings.state_path,
            intercom=intercom,
            path=vault_settings.state_path.replace("/state", "/web"),
            server=server,
            target=target,
        )
    )
    return config


@pytest.fixture
def env(openbao) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ROTATOR_", "VAULT_"))}
    return {
        **base,
        "VAULT_TOKEN": openbao.root_token,
        "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
        "ROTATOR_HOOK_TOKEN": HOOK_TOKEN,
    }


def rotator(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*ROTATOR, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        **kwargs,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


# --- item 9: absurd durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "key"),
    [
        ("target", 'grace_period = "10000000d"', "targets[0] (web).grace_period"),
        ("target", "grace_period = inf", "targets[0] (web).grace_period"),
        ("target", "grace_period = nan", "targets[0] (web).grace_period"),
        ("target", 'schedule = "10000000d"', "targets[0] (web).schedule"),
        ("vault", "timeout = inf", "vault.timeout"),
        ("vault", "timeout = 0", "vault.timeout"),
    ],
)
def test_check_config_refuses_absurd_durations(tmp_path, vault_settings, env, section, line, key):
    """`check-config` refuses a duration out of its range (TOML inf and nan included), naming
    the key and the range, exit 2, instead of passing it on to overflow later."""
    if section == "vault":
        config = tmp_path / "vault.toml"
        text = write_config(tmp_path, vault_settings, "http://127.0.0.1:9").read_text()
        config.write_text(text.replace("[server]", f"{line}\n[server]", 1))
    else:
        config = write_config(tmp_path, vault_settings, "http://127.0.0.1:9", target=line)
    result = rotator(env, "--config", str(config), "check-config")
    assert result.returncode == 2
    [problem] = [line for line in result.stderr.splitlines() if line.startswith(f"  - {key}: ")]
    assert "must be from " in problem
