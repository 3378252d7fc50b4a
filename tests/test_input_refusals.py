"""Bad and weak input at the command line, as users meet it: real ``rotator`` subprocesses.

Each refusal exits 2 with a message naming the key, variable or option and what is allowed,
changes nothing and prints no traceback; each warning leaves the exit code at 0.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.vault import Vault

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


# --- item 18: weak values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("     ", "starts or ends with whitespace"),
        ("short", "has 5 characters; use at least 16"),
        (HOOK_TOKEN + "\n", "starts or ends with whitespace"),
    ],
)
def test_check_config_refuses_a_weak_hook_token_from_the_environment(
    tmp_path, vault_settings, env, token, says
):
    """A whitespace-only, short or newline-trailed hook token in its variable is refused by
    check-config with the key and the rule, and never echoed."""
    config = write_config(
        tmp_path,
        vault_settings,
        "http://127.0.0.1:9",
        server='hook_token_env = "ROTATOR_HOOK_TOKEN"',
    )
    result = rotator({**env, "ROTATOR_HOOK_TOKEN": token}, "--config", str(config), "check-config")
    assert result.returncode == 2
    assert "server.hook_token_env: $ROTATOR_HOOK_TOKEN: the hook token " in result.stderr
    assert says in result.stderr
    if token.strip():
        assert token.strip() not in result.stdout + result.stderr


def test_the_daemon_refuses_a_weak_hook_token_read_from_vault(tmp_path, vault_settings, env):
    """A hook token in Vault is known only when `rotator run` reads it: a 5-character one
    stops the daemon with exit 2 and a clear reason, and the token is not printed."""
    token_path = vault_settings.state_path.replace("/state", "/hook")
    vault = Vault(vault_settings, environ=env)
    try:
        vault.write(token_path, {"token": "abcde"}, cas=0)
    finally:
        vault.close()
    config = write_config(
        tmp_path,
        vault_settings,
        "http://127.0.0.1:9",
        server=f'hook_token_vault = "{token_path}"',
    )
    result = rotator(env, "--config", str(config), "run")
    assert result.returncode == 2
    assert "the hook token has 5 characters; use at least 16" in result.stderr
    assert f"vault:{token_path}" in result.stderr
    assert "abcde" not in result.stdout + result.stderr


def test_check_config_warns_about_what_works_but_is_probably_not_meant(
    tmp_path, vault_settings, env
):
    """A region that base_url overrides and a zero grace period are warnings with their key:
    printed by check-config, which still exits 0."""
    config = write_config(
        tmp_path,
        vault_settings,
        "http://127.0.0.1:9",
        target='region = "EU"\ngrace_period = "0s"',
    )
    result = rotator(env, "--config", str(config), "check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "2 warning(s):" in result.stderr
    assert "targets[0] (web): region 'eu' is ignored: base_url" in result.stderr
    assert "targets[0] (web): grace_period 0s deletes the old secret" in result.stderr


def test_an_unknown_log_level_is_refused_the_same_way_from_either_source(
    tmp_path, vault_settings, env
):
    """ROTATOR_LOG_LEVEL=trace is refused like --log-level trace (exit 2, the allowed levels
    named), not silently read as info."""
    config = write_config(tmp_path, vault_settings, "http://127.0.0.1:9")
    by_variable = rotator(
        {**env, "ROTATOR_LOG_LEVEL": "trace"}, "--config", str(config), "check-config"
    )
    by_option = rotator(env, "--config", str(config), "--log-level", "trace", "check-config")
    allowed = "invalid choice: 'trace' (choose from 'debug', 'info', 'warning', 'error')"
    for result in (by_variable, by_option):
        assert result.returncode == 2
        assert allowed in result.stderr
        assert "configuration OK" not in result.stdout
    assert "$ROTATOR_LOG_LEVEL: " + allowed in by_variable.stderr
    assert (
        rotator(
            {**env, "ROTATOR_LOG_LEVEL": "WARNING"}, "--config", str(config), "check-config"
        ).returncode
        == 0
    ), "the variable keeps accepting any case"


# --- item 12: end of input at the emergency prompt ---------------------------------------------


@pytest.fixture
def provisioned(tmp_path, vault_settings, env, emulator) -> tuple[Path, str]:
    """A target with its first secret, and `status --json` as it stands."""
    config = write_config(tmp_path, vault_settings, emulator.url)
    first = rotator(env, "--config", str(config), "reconcile")
    assert first.returncode == 0, first.stderr
    return config, rotator(env, "--config", str(config), "status", "--json").stdout


def test_ctrl_d_at_the_emergency_prompt_is_a_no(provisioned, env, emulator):
    """End of input (Ctrl-D on a terminal) at the emergency prompt aborts: exit 2, "nothing
    changed", no traceback, and the record and Intercom's secrets are as they were."""
    config, before = provisioned
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*ROTATOR, "--config", str(config), "rotate-now", "web", "--emergency"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as process:
        os.close(follower)
        os.write(leader, b"\x04")  # what the terminal sends for Ctrl-D: end of input
        out, err = process.communicate(timeout=60)
    os.close(leader)
    assert process.returncode == 2, err
    assert "Type 'yes' to go on" in out
    assert "aborted; nothing changed" in out
    assert "Traceback" not in out + err
    assert "internal error" not in err
    assert rotator(env, "--config", str(config), "status", "--json").stdout == before
    assert len(emulator.store.all()) == 1
    assert json.loads(before)[0]["phase"] == "idle"


def test_the_emergency_prompt_without_any_stdin_is_refused(provisioned, env, emulator):
    """With standard input closed altogether, --emergency without --yes is refused (exit 2,
    "add --yes"), not an internal error, and nothing changes."""
    config, before = provisioned
    # A shim closes fd 0, then becomes rotator: as when started with `<&-` in a shell.
    closes_stdin = "import os, sys; os.close(0); os.execv(sys.argv[1], sys.argv[1:])"
    command = [*ROTATOR, "--config", str(config), "rotate-now", "web", "--emergency"]
    result = subprocess.run(
        [sys.executable, "-c", closes_stdin, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "add --yes to confirm" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert rotator(env, "--config", str(config), "status", "--json").stdout == before
    assert len(emulator.store.all()) == 1


# --- review of issue 10: what the configuration names, and where it is ----------------------------


def test_an_empty_config_option_is_refused_not_replaced_by_the_variable(tmp_path, env):
    """`--config ""` is a usage error (exit 2) naming --config, not a silent fall-back to
    $ROTATOR_CONFIG (a script whose variable came out empty would check another file)."""
    result = rotator(
        {**env, "ROTATOR_CONFIG": str(tmp_path / "other.toml")}, "--config", "", "check-config"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--config" in result.stderr
    assert "the path is empty" in result.stderr
    assert "other.toml" not in result.stderr


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null", "directory"])
def test_a_config_path_that_is_not_a_regular_file_is_refused(tmp_path, env, path):
    """A device (`/dev/zero` was read forever) or a directory is refused at once, exit 2."""
    if path == "directory":
        path = str(tmp_path)
    result = rotator(env, "--config", path, "check-config")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a regular file" in result.stderr


def test_a_config_file_larger_than_the_limit_is_refused(tmp_path, vault_settings, env):
    """A configuration file past 16 MiB (room for 10,000 targets) is refused with its size
    limit, not parsed."""
    from rotator.config.loading import MAX_CONFIG_BYTES

    assert MAX_CONFIG_BYTES == 16 * 2**20
    config = write_config(tmp_path, vault_settings, "http://127.0.0.1:9")
    config.write_text(config.read_text() + "#" * MAX_CONFIG_BYTES + "\n")
    result = rotator(env, "--config", str(config), "check-config")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "larger than 16 MiB" in result.stderr


def test_a_password_in_base_url_is_never_printed(tmp_path, vault_settings, env):
    """check-config, a pass failing on that Intercom (with the client's debug logs) and status
    show the base_url with its user and password as `***@`."""
    password = "pw-" + uuid.uuid4().hex
    config = write_config(tmp_path, vault_settings, f"http://ops:{password}@127.0.0.1:9")
    checked = rotator(env, "--config", str(config), "check-config")
    assert checked.returncode == 0, checked.stderr
    assert "http://***@127.0.0.1:9" in checked.stdout
    passed = rotator(env, "--config", str(config), "--log-level", "debug", "reconcile")
    assert passed.returncode == 1, passed.stdout + passed.stderr
    assert "127.0.0.1:9" in passed.stdout + passed.stderr
    shown = rotator(env, "--config", str(config), "status", "--json")
    for result in (checked, passed, shown):
        assert password not in result.stdout + result.stderr


def test_a_listen_name_that_does_not_resolve_is_a_config_error_at_run(
    tmp_path, vault_settings, env
):
    """`rotator run` whose listen host names nothing (`nosuchhost.invalid`) exits 2 in our
    words, with no traceback: only `run` can find that out."""
    config = write_config(tmp_path, vault_settings, "http://127.0.0.1:9")
    config.write_text(config.read_text().replace("127.0.0.1:0", "nosuchhost.invalid:8080"))
    assert rotator(env, "--config", str(config), "check-config").returncode == 0
    result = rotator(env, "--config", str(config), "run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "'nosuchhost.invalid' does not resolve to an address" in result.stderr
    assert "internal error" not in result.stdout + result.stderr


def test_blank_vault_and_notify_variables_count_as_unset(tmp_path, env):
    """A variable holding only whitespace (an AppRole secret id, a webhook URL) is refused like
    an unset one, by key, without its value."""
    config = tmp_path / "blank.toml"
    config.write_text(
        '[vault]\naddress = "http://127.0.0.1:9"\n'
        '[vault.auth]\nmethod = "approle"\nrole_id = "r"\nsecret_id_env = "SECRET_ID"\n'
        '[[notify.webhooks]]\nurl_env = "SLACK_URL"\n'
        '[[targets]]\nname = "web"\ntoken_env = "INTERCOM_TOKEN"\nsecret_name = "W"\n'
        'vault_path = "apps/web"\n'
    )
    blank = {**env, "SECRET_ID": " \n", "SLACK_URL": "\t"}
    result = rotator(blank, "--config", str(config), "check-config")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "vault.auth: $SECRET_ID holds only whitespace" in result.stderr
    assert "notify.webhooks[0].url_env: $SLACK_URL holds only whitespace" in result.stderr
