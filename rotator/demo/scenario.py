"""``rotator demo``: the real daemon rotating a secret on this machine, nothing to configure.

It starts an OpenBao dev server (``bao server -dev``) and the Intercom emulator on loopback,
writes a demo configuration (a rotation every few seconds, a short grace period), and runs the
real daemon in-process. The target names three consumers (``rotator.demo.fleet``): two probed
consumer processes that read the secret from Vault, reload it a few seconds late, sign a
``user_hash`` and a Messenger JWT every 50 ms and have the emulator verify both, and answer
rotator's probe; and ``billing``, a thread that confirms through the hook with its name. The old
secret is retired only once all three are on the new one, and the demo prints each. Everything
stops cleanly on Ctrl-C, or after ``--rotations N``: OpenBao runs in its own session, so a
terminal's Ctrl-C reaches the demo alone, which prints its summary before it stops OpenBao and
removes its temporary directory.

Secret material is never printed: only Intercom ids and fingerprints.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rotator.config import Settings, load_settings
from rotator.daemon import Daemon
from rotator.demo.fleet import (
    HOOK_CONSUMER,
    HOOK_DELAY,
    Checks,
    RolloutPrinter,
    collect_checks,
    hook_body,
    probed_consumers,
)
from rotator.demo.openbao import BaoNotFoundError, OpenBaoDevServer, find_bao, free_port
from rotator.emulator import Emulator, RunningEmulator, Token, messenger_jwt, user_hash
from rotator.errors import PermanentError, RotatorError
from rotator.logs import get_logger
from rotator.probe import HttpProber
from rotator.reconciler import Reconciler, client_factory_with
from rotator.redaction import SecretValue
from rotator.vault import Vault

log = get_logger()
TARGET = "web"
VAULT_PATH = "intercom/identity-verification/web"


@dataclass
class ConsumerStats:
    """The ``billing`` thread's signatures and reloads."""

    checks: Checks = field(default_factory=Checks)
    reloads: int = 0


class DemoSetupError(PermanentError):
    """The demo cannot start as asked: the user must act (another ``--port``, install ``bao``)."""


def run_demo(
    *, rotations: int | None = None, schedule: str = "20s", grace: str = "10s", port: int = 0
) -> int:
    """Run until ``rotations`` completed, or a signal (Ctrl-C, SIGTERM, SIGHUP) asks to stop:
    stopping is how the demo ends, so either way it prints its summary and returns 0, or 1 if
    a signature was rejected. Raises ``DemoSetupError`` when it cannot start as asked."""
    try:
        binary = find_bao()
    except BaoNotFoundError as e:
        raise DemoSetupError(e.message) from e
    stop = threading.Event()
    # First of all: a signal during start-up must take the same clean way out as one later.
    previous = _stop_on_signals(stop)
    try:
        # Removed on every way out: a clean stop, an error, a signal.
        with tempfile.TemporaryDirectory(prefix="rotator-demo-") as workdir:
            return _run(
                Path(workdir),
                binary,
                stop,
                rotations=rotations,
                schedule=schedule,
                grace=grace,
                port=port,
            )
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)


def _run(
    workdir: Path,
    binary: str,
    stop: threading.Event,
    *,
    rotations: int | None,
    schedule: str,
    grace: str,
    port: int,
) -> int:
    intercom_token = SecretValue("demo-intercom-" + secrets.token_hex(12))
    hook_token = SecretValue("demo-hook-" + secrets.token_hex(12))
    emulator = Emulator(tokens=[Token.parse(f"{intercom_token.reveal()}:read,write")])
    # The emulator first: a port the user chose and cannot have fails before anything starts.
    with (
        _serve(emulator, port) as intercom,
        OpenBaoDevServer(binary) as bao,
        probed_consumers(bao, intercom.url, VAULT_PATH) as fleet,
    ):
        hook_port = free_port()
        config = workdir / "rotator.toml"
        probes = {name: process.probe_url for name, process in fleet}
        config.write_text(
            _config_text(bao.address, intercom.url, hook_port, schedule, grace, probes=probes)
        )
        environ = {
            "VAULT_TOKEN": bao.root_token,
            "INTERCOM_TOKEN": intercom_token.reveal(),
            "ROTATOR_HOOK_TOKEN": hook_token.reveal(),
        }
        settings = load_settings(config)
        _banner(bao.address, intercom.url, hook_port, config, settings)
        vault = Vault(settings.vault, environ=environ)
        reconciler = Reconciler(
            settings,
            vault,
            environ=environ,
            client_factory=client_factory_with(stop.wait),
            listeners=[RolloutPrinter()],
            prober=HttpProber(settings.probes),
        )
        daemon = Daemon(settings, reconciler, vault, environ=environ, stopping=stop)
        stats = ConsumerStats()
        consumer = threading.Thread(
            target=_consume,
            kwargs={
                "bao": bao,
                "intercom_url": intercom.url,
                "hook_base": f"http://127.0.0.1:{hook_port}",
                "hook_token": hook_token,
                "stats": stats,
                "stop": stop,
            },
            name="demo-consumer",
            daemon=True,
        )
        completed = 0
        started = False
        try:
            if not stop.is_set():
                daemon.start()
                started = True
                consumer.start()
                completed = _watch(reconciler, rotations, stop)
        finally:
            stop.set()
            if started:
                daemon.stop()
                consumer.join(timeout=5)
                completed = _completed(reconciler, completed)
            reconciler.close()
            vault.close()
        checks = Checks()
        collect_checks(fleet, checks)
        # Said while OpenBao and the emulator still run; they stop as the `with` ends.
        print(
            f"\nDone: {completed} rotation(s) completed. The probed consumers verified "
            f"{checks.total} signature(s): {checks.describe()}; {HOOK_CONSUMER} verified "
            f"{stats.checks.total}: {stats.checks.describe()}, and reloaded {stats.reloads} "
            "time(s).",
            flush=True,
        )
    return 0 if checks.failures == 0 and stats.checks.failures == 0 else 1


def _serve(emulator: Emulator, port: int) -> RunningEmulator:
    try:
        return emulator.serve(port=port)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise DemoSetupError(
                f"port {port} is already in use by another program: stop it, or choose another "
                "port for the Intercom emulator with --port N (or leave --port out: any free "
                "port will do)"
            ) from e
        raise DemoSetupError(
            f"cannot listen on 127.0.0.1:{port} ({e.strerror or e}): choose another port "
            "with --port N, or leave --port out"
        ) from e


def _config_text(
    vault: str, intercom: str, hook_port: int, schedule: str, grace: str, *, probes: dict[str, str]
) -> str:
    probed = "".join(
        f'\n[[targets.consumers]]\nname = "{name}"\nprobe_urls = ["{url}"]\n'
        for name, url in probes.items()
    )
    return f"""\
# Written by `rotator demo`: a rotation every {schedule}, a {grace} grace period, and three
# named consumers: the old secret is retired once each is seen on the new one.
[vault]
address = "{vault}"
mount = "secret"
state_path = "rotator/state"
[vault.auth]
method = "token"                # from $VAULT_TOKEN
[server]
listen = "127.0.0.1:{hook_port}"
hook_token_env = "ROTATOR_HOOK_TOKEN"
[daemon]
reconcile_interval = "1s"
[probes]
timeout = "500ms"
deadline = "1s"
spacing = "1s"                  # rounds counted in a streak: at least a second apart
[[targets]]
name = "{TARGET}"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
platforms = ["web"]
vault_path = "{VAULT_PATH}"
schedule = "{schedule}"
grace_period = "{grace}"
confirmation = "consumers"
{probed}
[[targets.consumers]]
name = "{HOOK_CONSUMER}"            # no probe: confirms through the hook with its name
"""


def _banner(vault: str, intercom: str, hook_port: int, config: Path, settings: Settings) -> None:
    target = settings.targets[0]
    print(
        "rotator demo: the real daemon, an OpenBao dev server and the Intercom emulator.\n"
        f"  OpenBao   {vault}  (dev mode, in memory)\n"
        f"  Intercom  {intercom}  (emulator)\n"
        f"  hook      http://127.0.0.1:{hook_port}/v1/targets/{TARGET}/confirm\n"
        f"  config    {config}\n"
        f"  target    {TARGET}: {target.schedule.describe()}, grace {target.grace_period:g}s, "
        f"consumers read secret/{VAULT_PATH}\n"
        "Consumers: web-backend and mobile-api (processes that rotator probes; they reload 1 s\n"
        f"and 9 s late) and {HOOK_CONSUMER} (confirms through the hook {HOOK_DELAY:g} s after "
        "its reload).\nEach signs a user_hash and a JWT every 50 ms and has Intercom verify "
        "them. Ctrl-C stops.\n",
        flush=True,
    )


def _consume(
    *,
    bao: OpenBaoDevServer,
    intercom_url: str,
    hook_base: str,
    hook_token: SecretValue,
    stats: ConsumerStats,
    stop: threading.Event,
) -> None:
    """Play the billing service: read the secret from Vault, sign both ways and have Intercom
    verify, and confirm each new secret through the hook, with its name, once reloaded."""
    hook_url = f"{hook_base}/v1/targets/{TARGET}/confirm"
    current: str | None = None
    confirmed: str | None = None
    reloaded_at = 0.0
    with httpx.Client(timeout=5.0) as http:
        vault_headers = {"X-Vault-Token": bao.root_token}
        while not stop.wait(0.05):
            answer = http.get(f"{bao.address}/v1/secret/data/{VAULT_PATH}", headers=vault_headers)
            if answer.status_code != 200:
                continue  # nothing provisioned yet
            data = answer.json()["data"]["data"]
            secret = SecretValue(data["secret"])
            user = f"user-{stats.checks.total % 1000}"
            for method, params in (
                ("user_hash", {"user_id": user, "user_hash": user_hash(secret.reveal(), user)}),
                ("jwt", {"jwt": messenger_jwt(secret.reveal(), user)}),
            ):
                valid = http.get(f"{intercom_url}/__verify", params=params).json().get("valid")
                stats.checks.add(method, 1 if valid else 0, 0 if valid else 1)
                if not valid:
                    _say(f"{HOOK_CONSUMER}: {method} REJECTED with secret {data['intercom_id']}")
            if data["intercom_id"] != current:
                current, reloaded_at = data["intercom_id"], time.monotonic()
                stats.reloads += 1
                _say(f"{HOOK_CONSUMER}: reloaded secret {current}; confirming in {HOOK_DELAY:g}s")
            due = time.monotonic() - reloaded_at >= HOOK_DELAY
            if current is not None and current != confirmed and due:
                answer = http.post(
                    hook_url,
                    json=hook_body(current),
                    headers={"Authorization": f"Bearer {hook_token.reveal()}"},
                )
                # 409 or 503: not recorded yet, ask again on the next round; anything else is
                # an answer (200 confirmed, or a refusal that asking again will not change).
                if answer.status_code not in {409, 503}:
                    confirmed = current


def _stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C (SIGINT), SIGTERM and a closed terminal (SIGHUP) stop everything cleanly, even
    where a shell started the demo with SIGINT ignored (a background job), which would leave
    Python's own handler out. Returns the handlers replaced."""

    def on_signal(signum: int, _frame: object) -> None:
        if not stop.is_set():
            with contextlib.suppress(OSError):  # a terminal already gone (SIGHUP)
                print(f"\n{signal.Signals(signum).name}: stopping", flush=True)
        stop.set()

    previous: dict[int, Any] = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, on_signal)
    return previous


def _watch(reconciler: Reconciler, rotations: int | None, stop: threading.Event) -> int:
    """Wait for a stop (or ``rotations``); the rotations completed, as last seen."""
    completed = 0
    while not stop.wait(0.5):
        completed = _completed(reconciler, completed)
        if rotations is not None and completed >= rotations:
            _say(f"{rotations} rotation(s) completed; stopping")
            break
    return completed


def _completed(reconciler: Reconciler, last: int) -> int:
    """Rotations that replaced a secret (the first, which only provisions one, is not counted);
    ``last`` when Vault cannot tell now: the summary still says what was seen."""
    try:
        record, _ = reconciler.record(TARGET)
    except RotatorError as e:
        log.warning("demo.count_failed", error=str(e))
        return last
    return sum(1 for h in record.history if h.retired_ids) if record else 0


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
