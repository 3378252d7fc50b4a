"""Real signals sent to real `rotator` processes (OpenBao and the emulator behind them): a daemon
that fails to start does not linger, SIGHUP does not kill the daemon, and a one-shot command
stopped mid-pass releases its lease, says so and exits 128 + the signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN

ROTATOR = [sys.executable, "-m", "rotator"]

CONFIG = """\
[vault]
address = "{vault}"
mount = "secret"
state_path = "{state}"
[vault.auth]
method = "token"
[server]
listen = "127.0.0.1:{port}"
hook_token_env = "ROTATOR_HOOK_TOKEN"
[daemon]
reconcile_interval = "{interval}"
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
platforms = ["web"]
vault_path = "{path}"
schedule = "30d"
grace_period = "24h"
confirmation = "hook-or-grace"
"""


class Gate:
    """Holds Intercom's answer to a create until released, so a real command blocks mid-pass
    with its lease written, exactly where a slow Intercom would hold it."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.opened = threading.Event()

    def wrap(self, app: Any) -> Any:
        def gated(environ: dict[str, Any], start_response: Any) -> Any:
            creating = environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith(
                "/secure_mode_secrets"
            )
            if self.armed and creating:
                self.entered.set()
                self.opened.wait(60)
            return app(environ, start_response)

        return gated


@pytest.fixture
def gate() -> Iterator[Gate]:
    """An unarmed gate, opened at the end of the test whatever happened."""
    made = Gate()
    yield made
    made.opened.set()


@pytest.fixture
def intercom_emulator_middleware(
    intercom_emulator_middleware: Callable[[Any], Any] | None, gate: Gate
) -> Callable[[Any], Any]:
    """The suite's contract check, around the gate."""

    def wrap(app: Any) -> Any:
        gated = gate.wrap(app)
        return intercom_emulator_middleware(gated) if intercom_emulator_middleware else gated

    return wrap


@pytest.fixture(autouse=True)
def sigint_as_from_a_terminal() -> Iterator[None]:
    """The commands under test must get SIGINT as a terminal gives it. A test run started in
    the background by a shell without job control (``./.ci/run &``) has SIGINT ignored, and an
    ignored signal stays ignored in every child (rotator then keeps it ignored, as under
    ``nohup``): handled here again, the children start with its default."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class Setup:
    """A config file and environment for one target against a Vault and the emulator."""

    def __init__(self, tmp_path: Path, vault: Any, emulator: Any, state: str, **values: str):
        self.vault = vault
        self.state = state
        self.port = free_port()
        self.config = tmp_path / "rotator.toml"
        self.values = {
            "vault": vault.address,
            "state": state,
            "port": str(self.port),
            "intercom": emulator.url,
            "path": state.replace("/state", "/web"),
            "interval": "30s",
            **values,
        }
        self.config.write_text(CONFIG.format(**self.values))
        self.env = {
            **os.environ,
            "VAULT_TOKEN": vault.root_token,
            "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
            "ROTATOR_HOOK_TOKEN": "signals-hook-token-0123456789",
            "ROTATOR_CONFIG": str(self.config),
            "ROTATOR_LOG_LEVEL": "info",
        }

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*ROTATOR, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )
        assert "Traceback" not in result.stdout + result.stderr
        return result

    def start(self, *args: str, log: Path, **env: str) -> subprocess.Popen[str]:
        """A `rotator` process whose stderr (its log) goes to ``log``, read while it runs."""
        with log.open("w") as sink:
            return subprocess.Popen(
                [*ROTATOR, *args],
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=sink,
                text=True,
            )

    def record(self) -> dict[str, Any]:
        client = self.vault.admin()
        answer = client.secrets.kv.v2.read_secret_version(
            path=f"{self.state}/web", mount_point="secret", raise_on_deleted_version=True
        )
        data: dict[str, Any] = answer["data"]["data"]
        return data


@pytest.fixture
def setup(tmp_path: Path, openbao: Any, emulator: Any, vault_settings: Any) -> Setup:
    return Setup(tmp_path, openbao, emulator, vault_settings.state_path)


def _wait(
    condition: Callable[[], object], process: subprocess.Popen[str] | None, what: str
) -> None:
    """Poll what a real process does, failing if it dies first or takes over 30 s."""
    deadline = time.monotonic() + 30
    while not condition():
        if process is not None:
            code = process.poll()
            assert code is None, f"the process exited ({code}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.05)  # waiting for a real process


def _serving(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- item 2: a start-up failure after the server listens ---------------------------------------


@pytest.mark.parametrize(
    ("values", "env"),
    [
        ({}, {"ROTATOR_FAILPOINTS": "daemon.after_listen=raise"}),
        # Refused at config time once durations are bounded; before, it overflowed the
        # scheduler after the server listened, and the process lingered for ever.
        ({"interval": "10000000d"}, {}),
    ],
    ids=["failpoint", "absurd-interval"],
)
def test_a_daemon_failing_to_start_stops_its_server_and_exits(
    tmp_path, openbao, emulator, vault_settings, values, env
):
    """A start-up failure after the server listened closes the port and exits non-zero."""
    setup = Setup(tmp_path, openbao, emulator, vault_settings.state_path, **values)
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    with setup.start("run", log=log, **env) as daemon:
        try:
            code = daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            pytest.fail(f"the daemon did not exit; healthz served: {_serving(setup.port)}")
    text = log.read_text()
    assert code not in {0, None}, text
    assert time.monotonic() - started < 20
    assert not _listening(setup.port)
    assert "Traceback" not in text
    if env:  # the failpoint fires only after the server listened: it was stopped
        assert "http.listening" in text, text
        assert "daemon.start_failed" in text, text
        assert "http.stopped" in text, text


# --- item 6: SIGHUP ------------------------------------------------------------------------


def test_sighup_is_logged_and_the_daemon_keeps_serving(setup, tmp_path):
    """SIGHUP neither kills nor reloads the daemon: it logs why, checks the file on disk, and
    the daemon serves on until SIGTERM, which still exits 0."""
    log = tmp_path / "daemon.log"
    with setup.start("run", log=log) as daemon:
        _wait(lambda: _serving(setup.port), daemon, "the daemon serves /healthz")
        os.kill(daemon.pid, signal.SIGHUP)
        _wait(lambda: "daemon.sighup_ignored" in log.read_text(), daemon, "the SIGHUP log line")
        assert _serving(setup.port)
        line = next(
            json.loads(x) for x in log.read_text().splitlines() if "daemon.sighup_ignored" in x
        )
        assert "restart rotator to apply config changes" in line["detail"]
        assert line["config_on_disk"] == "valid"

        # A broken file is named as such, and changes nothing in the running daemon.
        setup.config.write_text(setup.config.read_text().replace('name = "web"', "name = 7"))
        os.kill(daemon.pid, signal.SIGHUP)
        _wait(lambda: "invalid" in log.read_text(), daemon, "the broken file reported")
        assert _serving(setup.port)

        # A storm of them: still serving, and told in a few lines, not one per signal.
        for _ in range(200):
            os.kill(daemon.pid, signal.SIGHUP)
        assert _serving(setup.port)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    text = log.read_text()
    told = [json.loads(x) for x in text.splitlines() if "daemon.sighup_ignored" in x]
    assert 3 <= sum(entry["signals"] for entry in told) <= 202  # pending ones coalesce
    assert len(told) < 100
    assert "daemon.stopped" in text
    assert "Traceback" not in text


# --- item 7: a one-shot command stopped mid-pass ---------------------------------------------


def _blocked_mid_pass(
    setup: Setup, gate: Gate, tmp_path: Path, *args: str
) -> subprocess.Popen[str]:
    """A command blocked in a create with its lease written: rotate-now's after a first pass,
    reconcile's in that first pass (the target has no secret yet)."""
    if args[0] == "rotate-now":
        assert setup.run("reconcile").returncode == 0
    gate.armed = True
    process = setup.start(*args, log=tmp_path / "command.log")
    _wait(gate.entered.is_set, process, "the create reaches Intercom")
    return process


@pytest.mark.parametrize(
    ("args", "signum", "times"),
    [
        (("rotate-now", "web"), signal.SIGINT, 1),
        (("reconcile",), signal.SIGTERM, 1),
        (("rotate-now", "web"), signal.SIGINT, 2),  # an impatient double Ctrl-C
    ],
    ids=["rotate-now-SIGINT", "reconcile-SIGTERM", "rotate-now-double-SIGINT"],
)
def test_an_interrupted_command_releases_its_lease(
    setup, gate, emulator, tmp_path, args, signum, times
):
    """Stopped mid-pass by a signal, a one-shot command releases its lease, says so and exits
    128 + the signal; the next process acts at once instead of waiting out lease_ttl."""
    with _blocked_mid_pass(setup, gate, tmp_path, *args) as process:
        held = setup.record()
        assert held["phase"] == "creating"
        assert held["lease"] is not None
        for _ in range(times):
            os.kill(process.pid, signum)
        assert process.wait(timeout=15) == 128 + signum
    log = (tmp_path / "command.log").read_text()
    assert (
        f"rotator: interrupted ({signal.Signals(signum).name}): lease released on web; "
        "the rotation resumes at the next pass"
    ) in log
    assert "Traceback" not in log
    after = setup.record()
    assert after["lease"] is None
    assert after["phase"] == "creating"  # the step persisted before the create is kept
    assert after["rotation_id"] == held["rotation_id"]

    # The create that was in flight lands (its answer lost), as Intercom would do it.
    live = len(emulator.store.live("default"))
    gate.armed = False
    gate.opened.set()
    _wait(lambda: len(emulator.store.live("default")) > live, None, "the create to land")
    started = time.monotonic()
    resumed = setup.run("reconcile", timeout=30)
    assert resumed.returncode == 0, resumed.stderr
    assert "waiting_for_lease" not in resumed.stderr
    assert time.monotonic() - started < 20  # not the 60 s lease_ttl
    assert setup.record()["phase"] != "creating"
    assert setup.record()["lease"] is None


def test_status_and_doctor_show_a_held_lease(setup, gate, tmp_path):
    """While a command acts, status and doctor name the lease's holder, its age and from when
    another process may take over; once it is released they show none."""
    with _blocked_mid_pass(setup, gate, tmp_path, "rotate-now", "web") as process:
        holder = setup.record()["lease"]["holder"]
        shown = json.loads(setup.run("status", "--json").stdout)[0]["lease"]
        assert shown["holder"] == holder
        assert shown["ttl_s"] == 60
        assert 0 <= shown["age_s"] < 60
        assert shown["takeover_from"] > shown["written_at"]
        assert f"lease held by {holder}, last written" in shown["summary"]
        assert "another process may take over from" in shown["summary"]
        doctor = setup.run("doctor", "web")
        assert f"lease held by {holder}" in doctor.stdout
        os.kill(process.pid, signal.SIGINT)
        assert process.wait(timeout=15) == 130
    assert json.loads(setup.run("status", "--json").stdout)[0]["lease"] is None
    assert "lease held" not in setup.run("doctor", "web").stdout


def test_a_release_vault_does_not_answer_is_bounded_and_a_second_signal_waits(
    tmp_path, gate, emulator, vault_settings
):
    """With Vault frozen, an interrupted command gives up releasing within its bound and says
    the lease stays for lease_ttl; a second signal during the release does not cut it short."""
    from _openbao import OpenBao, find_bao

    with OpenBao(find_bao()) as frozen:
        setup = Setup(tmp_path, frozen, emulator, vault_settings.state_path)
        log = tmp_path / "command.log"
        with _blocked_mid_pass(setup, gate, tmp_path, "rotate-now", "web") as process:
            frozen._process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                os.kill(process.pid, signal.SIGINT)
                _wait(lambda: "lease.releasing" in log.read_text(), process, "the release")
                os.kill(process.pid, signal.SIGTERM)
                assert process.wait(timeout=20) == 130  # the first signal's code
                took = time.monotonic() - started
            finally:
                frozen._process.send_signal(signal.SIGCONT)
        text = log.read_text()
        assert took < 12, took
        assert "rotator: SIGTERM while stopping: still releasing" in text
        assert (
            "rotator: interrupted (SIGINT): could not release the lease on web (Vault did not "
            "answer within 5s): another process takes over once it has sat unchanged for "
            "lease_ttl (60s)"
        ) in text
        assert "Traceback" not in text
        assert setup.record()["lease"] is not None  # kept, as it said


def test_sigterm_stops_a_daemon_whose_pass_is_stuck_on_a_frozen_vault_in_time(
    tmp_path, emulator, vault_settings
):
    """A daemon whose pass waits on a frozen Vault still exits 0 within its 10 s promise on
    SIGTERM: the pass is abandoned, as a crash would abandon it, and the log says so. Break:
    the stop waited for the pass, 41 s of Vault timeouts and retries with the defaults."""
    from _openbao import OpenBao, find_bao

    with OpenBao(find_bao()) as frozen:
        setup = Setup(tmp_path, frozen, emulator, vault_settings.state_path, interval="1s")
        log = tmp_path / "daemon.log"
        with setup.start("run", log=log) as daemon:
            ready = f"http://127.0.0.1:{setup.port}/readyz"
            _wait(lambda: _status(ready) == 200, daemon, "the daemon is ready")
            frozen._process.send_signal(signal.SIGSTOP)
            try:
                # Readiness turns once its bounded check failed; a pass starts every second,
                # so one is waiting on Vault by then.
                _wait(lambda: _status(ready) == 503, daemon, "the daemon sees Vault frozen")
                started = time.monotonic()
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=30)
                took = time.monotonic() - started
            finally:
                frozen._process.send_signal(signal.SIGCONT)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert took < 10, took
    assert "daemon.pass_abandoned" in text
    assert "daemon.stopped" in text
    assert "Traceback" not in text


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None
