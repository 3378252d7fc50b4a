"""A process operators can trust (issue 10): it refuses to start without what it needs, keeps its
own problems out of the shared record, exits 1 when an attempt failed, and says what happened in
our words. Real `rotator` processes, a real OpenBao, the Intercom emulator.

Each test's first sentence states the behaviour it proves; the rest is the break it replays.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs
from test_rotation import bootstrap, make_settings
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here
from test_safety_findings import Cli, hand_made
from test_safety_findings import cli as cli  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.adopt import adopt_secret
from rotator.cli.exits import UsageError
from rotator.core.observation import RotateNow
from rotator.daemon import Daemon
from rotator.durations import format_duration
from rotator.emulator import Token
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.redaction import SecretValue
from rotator.vault import Vault

TWO_TARGETS = """\
[vault]
address = "{vault}"
mount = "secret"
state_path = "{state}"
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "{path}"
schedule = "30d"
grace_period = "10m"
[[targets]]
name = "app"
base_url = "{intercom}"
{app_token}
secret_name = "Production App"
vault_path = "{path}-app"
schedule = "30d"
grace_period = "24h"
"""


def state(cli: Cli, name: str = "web") -> tuple[dict[str, Any] | None, int]:
    """The target's state record as stored, and its KV version."""
    vault = Vault(cli.vault_settings, environ={"VAULT_TOKEN": cli.openbao.root_token})
    try:
        entry = vault.read(f"{cli.state}/{name}")
    finally:
        vault.close()
    return entry.data, entry.version


def write_state(cli: Cli, name: str, data: dict[str, Any]) -> None:
    vault = Vault(cli.vault_settings, environ={"VAULT_TOKEN": cli.openbao.root_token})
    try:
        vault.write(f"{cli.state}/{name}", data, cas=vault.read(f"{cli.state}/{name}").version)
    finally:
        vault.close()


def two_targets(cli: Cli, app_token: str = 'token_env = "INTERCOM_TOKEN"') -> dict[str, str]:
    """The environment of a config with targets web and app."""
    config = cli.tmp_path / "two.toml"
    config.write_text(
        TWO_TARGETS.format(
            vault=cli.openbao.address,
            state=cli.state,
            intercom=cli.emulator.url,
            path=cli.vault_path,
            app_token=app_token,
        )
    )
    return {**cli.env, "ROTATOR_CONFIG": str(config)}


# --- 3. fail fast: nothing shared is touched without what the process needs ----------------------


@pytest.mark.parametrize("verb", [["rotate-now", "web"], ["reconcile"], ["resume", "web"]])
def test_a_verb_without_its_token_variable_exits_2_and_writes_nothing(cli, verb):
    """A verb started without the Intercom token its config names refuses before it touches
    the shared record (exit 2, the variable named). Break: rotate-now without INTERCOM_TOKEN
    wrote `blocked` into the record, and the healthy daemon stopped rotating."""
    cli.provision()
    before = state(cli)
    env = {k: v for k, v in cli.env.items() if k != "INTERCOM_TOKEN"}
    result = cli.run(*verb, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "$INTERCOM_TOKEN is not set" in result.stderr
    assert state(cli) == before


def test_a_token_vault_that_does_not_exist_exits_2_before_anything_is_written(cli):
    """A target whose token_vault path holds nothing is refused at start, naming the key, and
    the other targets' records are untouched too."""
    env = two_targets(cli, app_token=f'token_vault = "{cli.state}-tokens/app#token"')
    result = cli.run("reconcile", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "target app: cannot read its token_vault" in result.stderr
    assert state(cli, "web") == (None, 0)
    assert state(cli, "app") == (None, 0)


def test_run_without_its_hook_variable_exits_2_at_once(cli):
    """The daemon refuses to start without a variable its [server] names, before listening."""
    config = cli.tmp_path / "rotator.toml"
    config.write_text(config.read_text() + '[server]\nhook_token_env = "ROTATOR_HOOK_TOKEN"\n')
    started = time.monotonic()
    result = cli.run("run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "server.hook_token_env: $ROTATOR_HOOK_TOKEN is not set" in result.stderr
    assert time.monotonic() - started < 30
    assert state(cli) == (None, 0)


def test_a_hook_only_target_without_a_hook_credential_is_a_config_error(cli):
    """confirmation = "hook" with no hook credential would wait forever: check-config says so."""
    config = cli.tmp_path / "rotator.toml"
    config.write_text(config.read_text() + 'confirmation = "hook"\n')
    result = cli.run("check-config")
    assert result.returncode == 2
    assert 'target web: confirmation = "hook" waits for confirmations' in result.stderr


# --- 4. local problems stay local; a block is cleared without a rotation ------------------------


def test_the_daemon_is_not_ready_while_it_cannot_act_on_a_target(world):
    """A daemon that lacks a target's token (a LocalError at its pass) answers /readyz 503
    naming the target, and writes nothing to the shared record."""
    bootstrap(world)
    world.clock.advance(days=31)  # due: the pass needs Intercom
    environ = {k: v for k, v in world.environ.items() if k != "INTERCOM_TOKEN"}
    reconciler = world.reconciler()
    reconciler.clients._environ = environ  # this process lost its variable
    before = reconciler.vault.read(reconciler.state_key("web"))
    daemon = Daemon(
        world.settings, reconciler, reconciler.vault, environ=environ, listen=("127.0.0.1", 0)
    )
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        answer = httpx.get(f"{daemon.server.url}/readyz")
        while "target web" not in answer.text and time.monotonic() < deadline:
            time.sleep(0.1)  # the daemon's first pass runs in its scheduler's thread
            answer = httpx.get(f"{daemon.server.url}/readyz")
    finally:
        daemon.stop()
    assert answer.status_code == 503
    assert "cannot act on target web" in answer.text
    assert "INTERCOM_TOKEN" in answer.text
    assert reconciler.vault.read(reconciler.state_key("web")) == before


def test_resume_clears_a_block_without_starting_a_rotation(cli):
    """`rotator resume` puts a blocked target back where it was and starts nothing: no create
    at Intercom, the same generation. Break: the only way out of a block was rotate-now, which
    also rotated."""
    config = cli.tmp_path / "rotator.toml"
    config.write_text(config.read_text() + "rotate_on_drift = true\n")  # passes look at drift
    current = cli.provision()
    kept = cli.consumer()
    stranger, material = hand_made(cli.emulator, "Someone else's")
    cli.write_consumer({**kept, "intercom_id": stranger, "secret": material})
    blocked = cli.run("reconcile")
    assert blocked.returncode == 1
    assert "web: blocked" in blocked.stdout
    assert "blocked: blocked" not in blocked.stdout  # item 17: no doubled words
    cli.write_consumer(kept)
    secrets = len(cli.emulator.store.all())
    generation = cli.status()["generation"]
    result = cli.run("resume", "web")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "web: resumed in idle (it was blocked: the consumers' Vault path holds" in result.stdout
    assert "web: idle: not due" in result.stdout
    assert "idle: idle" not in result.stdout
    status = cli.status()
    assert (status["phase"], status["generation"]) == ("idle", generation)
    assert status["current_secret_id"] == current
    assert len(cli.emulator.store.all()) == secrets
    again = cli.run("resume", "web")
    assert "neither paused nor blocked; nothing to resume" in again.stdout


# --- 11, 15: honest exits, and an error that is over is gone --------------------------------------


def test_rotate_now_and_reconcile_exit_1_when_the_attempt_failed_and_0_once_it_worked(cli):
    """A rotate-now whose create failed (Intercom 5xx) exits 1, and so does the reconcile that
    finds the target backing off; once a rotation went through, status shows no last error.
    Break: both exited 0 while nothing rotated, and status kept the old error afterwards."""
    cli.provision()
    cli.emulator.set_faults("5xx=1")
    failed = cli.run("rotate-now", "web")
    assert failed.returncode == 1, failed.stdout
    assert "attempt 1 failed" in failed.stdout
    backing_off = cli.run("reconcile")
    assert backing_off.returncode == 1, backing_off.stdout
    assert "backing off" in backing_off.stdout
    assert cli.status()["last_error"]
    cli.emulator.set_faults("5xx=0")
    worked = cli.run("rotate-now", "web")
    assert worked.returncode == 0, worked.stdout + worked.stderr
    status = cli.status()
    assert (status["phase"], status["last_error"], status["attempts"]) == (
        "awaiting_rollout",
        None,
        0,
    )


# --- 13. one damaged record hides nothing else -----------------------------------------------------


@pytest.mark.parametrize(
    ("damage", "advice"),
    [
        ({"schema_version": 2, "target": "app", "phase": "dancing"}, "vault kv rollback -version="),
        ({"schema_version": 99}, "Upgrade rotator"),
    ],
    ids=["hand-edited", "newer-schema"],
)
def test_status_shows_every_target_and_names_the_one_whose_record_is_unreadable(
    cli, damage, advice
):
    """One record rotator cannot read shows as `unknown` with what to do, and every other
    target still shows (exit 1). Break: one damaged record hid every target's status."""
    env = two_targets(cli)
    assert cli.run("reconcile", env=env).returncode == 0
    write_state(cli, "app", damage)
    result = cli.run("status", "--json", env=env)
    assert result.returncode == 1
    web, app = json.loads(result.stdout)
    assert (web["name"], web["phase"]) == ("web", "idle")
    assert (app["name"], app["phase"]) == ("app", "unknown")
    assert advice in app["last_error"]
    assert f"{cli.state}/app" in app["last_error"]
    if "rollback" in advice:  # the version before the damage
        assert f"-version={state(cli, 'app')[1] - 1} secret/{cli.state}/app" in app["last_error"]


# --- 14, 17: messages operators read ------------------------------------------------------------


def test_a_block_is_logged_as_an_error_and_a_failed_attempt_as_a_warning(world):
    """Alerting on log levels sees trouble: a target newly blocked logs `rotation.blocked` at
    error, a failed attempt `rotation.attempt_failed` at warning. Break: both were info."""
    world.emulator.emulator.add_token(Token.parse("read-only-token:read"))
    world.environ["INTERCOM_TOKEN"] = "read-only-token"
    with capture_logs() as logs:
        assert world.reconciler().reconcile_all()[0].phase == "blocked"
    [blocked] = [e for e in logs if e["event"] == "rotation.blocked"]
    assert blocked["log_level"] == "error"
    assert "write_secure_mode_secret" in blocked["reason"]
    world.environ["INTERCOM_TOKEN"] = INTERCOM_EMULATOR_TOKEN
    world.emulator.set_faults("5xx=1")
    with capture_logs() as logs:
        world.reconciler().reconcile_target("web", RotateNow())
    [failed] = [e for e in logs if e["event"] == "rotation.attempt_failed"]
    assert (failed["log_level"], failed["attempt"]) == ("warning", 1)
    assert not [e for e in logs if e["event"] == "rotation.blocked"]


def test_check_config_writes_durations_as_people_do(cli):
    """30d reads `every 30d` (not `every 4w2d`), a 10 min grace `grace 10m` (not `600s`)."""
    result = cli.run("check-config", env=two_targets(cli))
    assert result.returncode == 0, result.stderr
    assert "every 30d, grace 10m" in result.stdout
    assert "every 30d, grace 1d" in result.stdout
    assert [format_duration(s) for s in (14 * 86400, 15 * 86400, 90061)] == [
        "2w",
        "15d",
        "1d1h1m1s",
    ]


def test_one_shot_commands_say_nothing_of_a_routine_login_and_name_an_outage_plainly(cli):
    """A one-shot command logs no `vault.login` line at info; Vault unreachable reads "connection
    refused", not the HTTP library's `HTTPConnectionPool(...): Max retries exceeded`."""
    cli.provision()
    quiet = cli.run("status")
    assert "vault.login" not in quiet.stderr
    config = cli.tmp_path / "rotator.toml"
    text = config.read_text().replace(cli.openbao.address, "http://127.0.0.1:9")
    config.write_text(text)
    down = cli.run("status")
    assert down.returncode == 1
    assert "Could not reach Vault at http://127.0.0.1:9" in down.stderr
    assert "connection refused" in down.stderr
    for internal in ("HTTPConnectionPool", "Max retries", "NewConnectionError"):
        assert internal not in down.stderr


def test_adopt_says_what_a_hook_only_target_will_do_with_the_secret_it_displaces(
    world, openbao, emulator, vault_settings
):
    """Under confirmation = "hook", adopt's refusal promises retirement once a confirmation
    arrives, not "after the grace period", which never applies there."""
    world.settings = make_settings(openbao, emulator, vault_settings, confirmation="hook")
    bootstrap(world)
    secret_id, material = hand_made(world.emulator, "Legacy Web")
    with pytest.raises(UsageError) as refused:
        adopt_secret(world.parts(), world.target, secret_id, SecretValue(material), force=False)
    message = str(refused.value)
    assert "retired once a confirmation arrives" in message
    assert "no grace period applies" in message
    assert "after the grace period" not in message


@pytest.mark.parametrize(
    ("stored", "says"),
    [
        (" \n", "holds only whitespace"),
        (
            INTERCOM_EMULATOR_TOKEN + "\nsecond-line",
            "holds a token with a control or non-ASCII character",
        ),
    ],
)
def test_a_vault_held_token_no_request_can_carry_exits_2_by_key(cli, stored, says):
    """A token_vault value that is blank, or has a newline inside it, is refused before
    anything is written (exit 2), naming the Vault key and never the value; it once went out,
    failed as "the connection broke off" and blocked the shared record."""
    vault = Vault(cli.vault_settings, environ={"VAULT_TOKEN": cli.openbao.root_token})
    try:
        vault.write(f"{cli.state}-creds/intercom", {"token": stored}, cas=0)
    finally:
        vault.close()
    env = two_targets(cli, app_token=f'token_vault = "{cli.state}-creds/intercom#token"')
    result = cli.run("reconcile", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"target app: token_vault {cli.state}-creds/intercom#token" in result.stderr
    assert says in result.stderr
    assert "second-line" not in result.stdout + result.stderr
    assert state(cli, "web") == (None, 0)
    assert state(cli, "app") == (None, 0)
