"""The engine's verbs as users run them: real `rotator` processes, a config file, OpenBao and
the emulator. Exit codes 0/1/2, no traceback for a mistake, no secret in any output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

ROTATOR = [sys.executable, "-m", "rotator"]
HOOK_TOKEN = "cli-hook-token-0123456789"
# A 256-bit base64url secret as Intercom issues them: nothing of this shape may be printed.
MATERIAL_SHAPE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")

EXAMPLE = """\
[vault]
address = "{vault}"   # default $VAULT_ADDR
mount = "secret"                     # KV v2 mount
state_path = "{state}"
[vault.auth]
method = "token"                     # token ($VAULT_TOKEN) | approle | kubernetes
[server]
listen = "127.0.0.1:{port}"
hook_token_env = "ROTATOR_HOOK_TOKEN"
[[targets]]
name = "web"
region = "us"                        # us | eu | au; base_url overrides it
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
platforms = ["web"]
vault_path = "{path}"
schedule = "30d"                     # or a 5-field cron line, e.g. "0 3 * * 1"
grace_period = "24h"
confirmation = "hook-or-grace"       # hook-or-grace | hook | grace
"""


@pytest.fixture
def setup(tmp_path, openbao, emulator, vault_settings):
    port = free_port()
    config = tmp_path / "rotator.toml"
    config.write_text(
        EXAMPLE.format(
            vault=openbao.address,
            state=vault_settings.state_path,
            port=port,
            intercom=emulator.url,
            path=vault_settings.state_path.replace("/state", "/web"),
        )
    )
    env = {
        **os.environ,
        "VAULT_TOKEN": openbao.root_token,
        "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
        "ROTATOR_HOOK_TOKEN": HOOK_TOKEN,
        "ROTATOR_CONFIG": str(config),
        "ROTATOR_LOG_LEVEL": "info",
    }
    return config, env, port


def run(env, *args, timeout=60, stdin=None):
    result = subprocess.run(
        [*ROTATOR, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        input=stdin,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert not MATERIAL_SHAPE.search(output), "something shaped like secret material was printed"
    return result


def test_the_documented_example_config_checks_out(setup):
    """The issue's example config, as written, passes check-config with its variables set."""
    _, env, _ = setup
    result = run(env, "check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "web:" in result.stdout


def test_check_config_names_missing_variables(setup):
    """Unset token variables are reported, each by key, exit 2."""
    _, env, _ = setup
    env = {k: v for k, v in env.items() if k not in {"INTERCOM_TOKEN", "ROTATOR_HOOK_TOKEN"}}
    result = run(env, "check-config")
    assert result.returncode == 2
    assert "targets[0] (web).token_env: $INTERCOM_TOKEN is not set" in result.stderr
    assert "server.hook_token_env: $ROTATOR_HOOK_TOKEN is not set" in result.stderr


def test_every_config_error_is_reported_at_once(tmp_path, setup):
    """Unknown keys, bad values and a missing token source, all in one report, exit 2."""
    _, env, _ = setup
    bad = tmp_path / "bad.toml"
    bad.write_text(
        textwrap.dedent(
            """\
            [vault]
            address = "vault.local"
            mout = "secret"
            [[targets]]
            name = "Web"
            secret_name = "x"
            vault_path = "p"
            schedule = "every tuesday"
            grace_period = "-1h"
            token = "inline-secret"
            """
        )
    )
    result = run(env, "--config", str(bad), "check-config")
    assert result.returncode == 2
    for key in (
        "vault.address",
        "vault.mout",
        "targets[0] (Web).name",
        "targets[0] (Web).schedule",
        "targets[0] (Web).grace_period",
        "targets[0] (Web).token",
    ):
        assert key in result.stderr, key
    assert "inline-secret" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--config", "/nonexistent/rotator.toml", "reconcile"), "file not found"),
        (("rotate-now", "mobile"), "no target named 'mobile'"),
        (("status", "mobile"), "no target named 'mobile'"),
        (("rotate-now", "web", "--emergency"), "add --yes"),
    ],
)
def test_user_mistakes_exit_2(setup, args, message):
    """A missing file, an unknown target, or --emergency without consent: exit 2, clear words."""
    _, env, _ = setup
    result = run(env, *args, stdin="")
    assert result.returncode == 2
    assert message in result.stderr


def test_reconcile_rotate_now_confirm_status(setup, emulator):
    """The by-hand flow: provision, rotate-now (joins if repeated), confirm, status."""
    _, env, _ = setup
    first = run(env, "reconcile")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("web: idle")
    started = run(env, "rotate-now", "web")
    assert started.returncode == 0, started.stderr
    assert "web: awaiting_rollout" in started.stdout
    joined = run(env, "rotate-now", "web")
    assert "was already under way; joined it" in joined.stdout
    assert len(emulator.store.all()) == 2
    status = run(env, "status", "--json")
    [entry] = json.loads(status.stdout)
    for key in (
        "name",
        "phase",
        "current_secret_id",
        "pending_secret_id",
        "next_rotation_at",
        "deadline",
        "last_error",
    ):
        assert key in entry
    assert entry["phase"] == "awaiting_rollout"
    assert entry["deadline"]
    wrong = run(env, "confirm", "web", "--secret-id", entry["current_secret_id"])
    assert wrong.returncode == 2
    assert "wrong_secret" in wrong.stdout
    done = run(env, "confirm", "web")
    assert done.returncode == 0, done.stderr
    assert "web: idle" in done.stdout
    assert [s.id for s in emulator.store.live("default")] == [entry["pending_secret_id"]]
    history = run(env, "status", "web", "--json", "--history")
    last = json.loads(history.stdout)[0]["history"][-1]
    assert last["confirmed_by"] == "cli"
    assert set(last["seconds"]) == {"creating", "awaiting_rollout", "retiring"}
    assert all(v is not None and v >= 0 for v in last["seconds"].values())
    table = on_a_terminal(env, "status", "web", "--history")
    assert "TARGET" in table
    assert "PHASE" in table
    assert "confirmed by cli (creating" in table


def on_a_terminal(env, *args: str) -> str:
    """Run rotator with its stdout on a pseudo-terminal, as a person at a shell would."""
    import pty

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*ROTATOR, *args], env=env, stdout=follower, stderr=subprocess.DEVNULL
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode()


def test_reconcile_exits_1_when_a_target_is_blocked(setup, emulator):
    """A revoked Intercom token blocks the target; reconcile says so and exits 1."""
    _, env, _ = setup
    result = run({**env, "INTERCOM_TOKEN": "revoked-0123456789"}, "reconcile")
    assert result.returncode == 1
    assert "web: blocked" in result.stdout
    assert "rejected the access token" in result.stdout
    status = run(env, "status", "--json")
    assert status.returncode == 1
    assert emulator.store.all() == []


def test_racing_processes_rotate_once(setup, emulator):
    """Four `rotate-now` processes at once: one rotation, one new secret."""
    _, env, _ = setup
    assert run(env, "reconcile").returncode == 0
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(env, "rotate-now", "web"), range(4)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert len(emulator.store.all()) == 2
    assert len(emulator.store.live("default")) == 2


def test_the_daemon_serves_the_hook_and_stops_on_sigterm(setup, emulator):
    """`rotator run`: healthz/readyz answer, a hook call retires the old secret, SIGTERM -> 0."""
    _, env, port = setup
    assert run(env, "reconcile").returncode == 0
    assert run(env, "rotate-now", "web").returncode == 0
    pending = json.loads(run(env, "status", "--json").stdout)[0]["pending_secret_id"]
    with subprocess.Popen(
        [*ROTATOR, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as daemon:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, daemon)
        assert httpx.get(f"{url}/readyz").json()["status"] == "ready"
        answer = httpx.post(
            f"{url}/v1/targets/web/confirm",
            json={"secret_id": pending},
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        for _ in range(200):
            if [s.id for s in emulator.store.live("default")] == [pending]:
                break
            httpx.get(f"{url}/healthz")  # a real request paces the wait, no sleep
        assert [s.id for s in emulator.store.live("default")] == [pending]
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=10) == 0
        out, err = daemon.communicate()
    assert "Traceback" not in out + err
    assert not MATERIAL_SHAPE.search(out + err)
    assert "daemon.stopped" in err


def _wait_up(url: str, process: subprocess.Popen) -> None:
    with httpx.Client(timeout=1) as http:
        for _ in range(600):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if http.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                threading.Event().wait(0.05)  # waiting for a real server to start
    raise AssertionError("the daemon did not come up")


def test_the_demo_runs_two_rotations_with_no_failed_signature():
    """`rotator demo --rotations 2` runs the real daemon and exits 0 with a clean consumer."""
    result = run(
        dict(os.environ),
        "demo",
        "--rotations",
        "2",
        "--schedule",
        "3s",
        "--grace",
        "2s",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 rotation(s) completed" in result.stdout
    assert result.stdout.count("(0 failed)") == 4, result.stdout
    assert "failed)" not in result.stdout.replace("(0 failed)", "")
    assert "billing: reloaded secret" in result.stdout


def test_repo_root_is_the_cwd_for_relative_config(tmp_path, setup):
    """Without --config or $ROTATOR_CONFIG, ./rotator.toml in the working directory is used."""
    config, env, _ = setup
    env = {k: v for k, v in env.items() if k != "ROTATOR_CONFIG"}
    (tmp_path / "work").mkdir()
    Path(tmp_path / "work" / "rotator.toml").write_text(config.read_text())
    result = subprocess.run(
        [*ROTATOR, "check-config"],
        cwd=tmp_path / "work",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_demo_stops_cleanly_on_a_signal():
    """Ctrl-C (SIGINT, here sent by the test) or SIGTERM stops the demo, its OpenBao and its
    emulator cleanly, with exit 0 and the summary."""
    with subprocess.Popen(
        [*ROTATOR, "demo", "--schedule", "2s", "--grace", "1s", "--rotations", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as demo:
        assert demo.stdout is not None
        for line in demo.stdout:  # bounded: the demo ends by itself if this never comes
            if "billing: reloaded secret" in line:
                break
        demo.send_signal(signal.SIGINT)
        rest = demo.stdout.read()
        assert demo.wait(timeout=30) == 0
    assert "SIGINT: stopping" in rest
    assert rest.count("(0 failed)") == 4, rest
