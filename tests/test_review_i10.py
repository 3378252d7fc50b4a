"""An adversarial review of the issue-10 fixes: each test replays one break found by running the
real `rotator` processes against a real OpenBao and the Intercom emulator.

Each test's first sentence states the behaviour expected; the rest is what was observed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_operator_process import state, write_state
from test_safety_findings import Cli
from test_safety_findings import cli as cli  # noqa: PLC0414 - the fixture, re-exported here

from rotator.emulator import Token
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.vault import Vault

ROTATOR = [sys.executable, "-m", "rotator"]
HOOK_TOKEN = "review-hook-token-0123456789abcdef"

SERVED = """\
[vault]
address = "{vault}"
mount = "secret"
state_path = "{state}"
[server]
listen = "{listen}"
hook_token_env = "ROTATOR_HOOK_TOKEN"
[daemon]
reconcile_interval = {interval}
[[targets]]
name = "web"
base_url = "{intercom}"
{token}
secret_name = "Production Web"
vault_path = "{path}"
schedule = "{schedule}"
grace_period = {grace}
"""


def config(cli: Cli, **values: str) -> dict[str, str]:
    """The environment of a config on this test's servers, with ``values`` overriding."""
    fields = {
        "vault": cli.openbao.address,
        "state": cli.state,
        "intercom": cli.emulator.url,
        "path": cli.vault_path,
        "listen": "127.0.0.1:0",
        "interval": '"30s"',
        "token": 'token_env = "INTERCOM_TOKEN"',
        "schedule": "30d",
        "grace": '"24h"',
        **values,
    }
    path = cli.tmp_path / "review.toml"
    path.write_text(SERVED.format(**fields))
    return {**cli.env, "ROTATOR_CONFIG": str(path), "ROTATOR_HOOK_TOKEN": HOOK_TOKEN}


# --- messages --------------------------------------------------------------------------------------


def test_a_block_on_an_intercom_refusal_says_blocked_once(cli):
    """A one-shot command whose pass is blocked by Intercom (a token without the write scope)
    prints `web: blocked …` without a doubled `blocked: blocked:`. Observed: `web: blocked
    r…: blocked: The Intercom token lacks the scope …` (item 17 was fixed only for drift).
    The target has no record yet: the read-only token is the only one it knows."""
    cli.emulator.emulator.add_token(Token.parse("review-read-only:read"))
    env = {**cli.env, "INTERCOM_TOKEN": "review-read-only"}
    result = cli.run("rotate-now", "web", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "web: blocked" in result.stdout
    assert not re.search(r"blocked( r\w+)?: blocked:", result.stdout), result.stdout


def test_status_rollback_advice_never_names_a_damaged_version(cli):
    """After two hand edits in a row, `status` does not call the first (damaged) edit "the last
    good version". Observed: the advice is always `-version=<current - 1>`, here a version
    that is itself damaged."""
    cli.provision()
    good = state(cli)[1]
    write_state(cli, "web", {"schema_version": 2, "target": "web", "phase": "dancing"})
    write_state(cli, "web", {"schema_version": 2, "target": "web", "phase": "waltzing"})
    assert state(cli)[1] == good + 2
    result = cli.run("status", "--json")
    [web] = json.loads(result.stdout)
    assert web["phase"] == "unknown"
    assert f"-version={good + 1} " not in web["last_error"], web["last_error"]


def test_doctor_says_how_to_fix_a_damaged_record(cli):
    """`doctor` on a hand-edited state record gives the fix `status` gives (kv rollback), not a
    placeholder. Observed: `fix: fix the cause named here, then run doctor again` after
    `state record is damaged (ValueError: 'dancing' is not a valid Phase)`."""
    cli.provision()
    write_state(cli, "web", {"schema_version": 2, "target": "web", "phase": "dancing"})
    result = cli.run("doctor")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fix the cause named here" not in result.stdout, result.stdout
    assert "kv rollback" in result.stdout, result.stdout


def test_demo_names_the_option_that_is_out_of_range(tmp_path):
    """`rotator demo --schedule 0s` is refused as a usage error naming `--schedule` (exit 2).
    Observed: a config error about `/tmp/rotator-demo-…/rotator.toml` (a file already removed)
    and `targets[0] (web).schedule`, options the user never wrote."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [*ROTATOR, "demo", "--schedule", "0s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--schedule" in result.stderr, result.stderr
    assert "rotator-demo-" not in result.stderr, result.stderr


# --- config values that pass but cannot work -------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{"interval": "false"}, {"grace": "true"}],
    ids=["reconcile_interval=false", "grace_period=true"],
)
def test_a_toml_boolean_is_not_accepted_as_a_duration(cli, values):
    """A TOML boolean where a duration belongs is refused (exit 2). Observed: check-config says
    OK; `reconcile_interval = false` becomes 0 s (under the 1 s bound that refuses "0s"; the
    daemon logs interval_s 0.0) and `grace_period = true` a 1-second grace period."""
    env = config(cli, **values)
    assert f" = {next(iter(values.values()))}\n" in Path(env["ROTATOR_CONFIG"]).read_text()
    result = cli.run("check-config", env=env)
    assert result.returncode == 2, result.stdout + result.stderr


def test_a_cron_schedule_that_never_fires_is_refused(cli):
    """A cron line with no future time (`0 0 31 2 *`: 31 February) is refused like an interval
    longer than 1825d. Observed: check-config OK, and `status` shows the next rotation at
    9999-12-31T23:59:59: the secret is never rotated."""
    env = config(cli, schedule="0 0 31 2 *")
    result = cli.run("check-config", env=env)
    assert result.returncode == 2, result.stdout + result.stderr


def test_an_unresolvable_listen_address_is_a_config_error(cli):
    """`rotator run` with `[server] listen` naming no valid host is a config error (exit 2) in
    our words. Observed: check-config OK, then `rotator: internal error (ValueError)` with a
    logged traceback from waitress (`Invalid host/port specified.`) and exit 1."""
    env = config(cli, listen="256.1.1.1:8080")
    result = cli.run("run", env=env)
    output = result.stdout + result.stderr
    assert "internal error" not in output, output
    assert '"exception"' not in output, output
    assert result.returncode == 2, output


def test_run_on_a_port_already_in_use_exits_2(cli):
    """`rotator run` whose listen port is taken exits 2 (as `emulate-intercom` and `demo` do),
    naming the port in our words. Observed: exit 1 and `cannot listen on 127.0.0.1:N: [Errno
    98] Address already in use`."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = config(cli, listen=f"127.0.0.1:{port}")
        result = cli.run("run", env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert str(port) in result.stderr, output
    assert "[Errno" not in output, output


# --- credentials this process holds ---------------------------------------------------------------


def test_a_blank_vault_token_is_a_config_error(cli):
    """`VAULT_TOKEN=" "` is refused by check-config and by reconcile (exit 2), as
    `INTERCOM_TOKEN=" "` is. Observed: check-config OK (exit 0), reconcile exit 1 with
    `web: ERROR: the Vault token is expected in the environment variable VAULT_TOKEN: unset`."""
    cli.provision()
    env = {**cli.env, "VAULT_TOKEN": " "}
    checked = cli.run("check-config", env=env)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    result = cli.run("reconcile", env=env)
    assert result.returncode == 2, result.stdout + result.stderr


def test_status_without_its_vault_token_exits_2(cli):
    """`status` without the Vault token variable its config names exits 2 (README: a variable
    the config names that this process lacks), as reconcile does. Observed: exit 1."""
    cli.provision()
    env = {k: v for k, v in cli.env.items() if k != "VAULT_TOKEN"}
    assert cli.run("reconcile", env=env).returncode == 2
    result = cli.run("status", env=env)
    assert result.returncode == 2, result.stdout + result.stderr


def test_a_vault_held_intercom_token_with_a_trailing_newline_blocks_nothing(cli):
    """An Intercom token kept in Vault with a trailing newline (as `echo … | vault kv put
    token=-` stores it) is used stripped, as the same value in $INTERCOM_TOKEN is, or refused
    by name; it never blocks the shared record. Observed: the first pass writes `blocked`
    with `Cannot send the list request … (the connection broke off). Check base_url/region.`"""
    vault = Vault(cli.vault_settings, environ={"VAULT_TOKEN": cli.openbao.root_token})
    try:
        vault.write(f"{cli.state}-creds/intercom", {"token": INTERCOM_EMULATOR_TOKEN + "\n"}, cas=0)
    finally:
        vault.close()
    env = config(cli, token=f'token_vault = "{cli.state}-creds/intercom#token"')
    result = cli.run("reconcile", env=env)
    output = result.stdout + result.stderr
    assert "connection broke off" not in output, output
    record, _ = state(cli)
    assert record is None or record["phase"] != "blocked", record
    assert not re.search(r"web: blocked", result.stdout), output


def test_an_operator_token_without_the_write_scope_does_not_block_the_target(cli):
    """A rotate-now run with a read-only token of the same workspace fails that command and
    leaves the target unblocked: the token the record is bound to (the daemon's) rotates on
    without `resume`. Observed: the shell's token blocked the shared record."""
    current = cli.provision()
    cli.emulator.emulator.add_token(Token.parse("review-read-only:read"))
    env = {**cli.env, "INTERCOM_TOKEN": "review-read-only"}
    result = cli.run("rotate-now", "web", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Intercom refused this process's token" in result.stdout + result.stderr
    status = cli.status()
    assert status["phase"] != "blocked", status
    assert status["current_secret_id"] == current
    assert status["lease"] is None  # given back: the working token need not wait for it
    healthy = cli.run("rotate-now", "web")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert cli.status()["phase"] == "awaiting_rollout"
