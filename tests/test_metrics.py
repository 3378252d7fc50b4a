"""/metrics as Prometheus sees it: a real Daemon on port 0, real OpenBao, the emulator.

The clock is the world's (see ``test_rotation``): every timestamp and age is exact. The names
are the ones ``deploy/prometheus/alerts.yaml`` relies on.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_commands import HOOK_TOKEN as CLI_HOOK_TOKEN
from test_commands import ROTATOR, _wait_up, run
from test_commands import setup as setup  # noqa: PLC0414 - the fixture, re-exported here
from test_rotation import HMAC_KEY, HOOK_TOKEN, START, _wait, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.config import VaultAuthSettings, VaultSettings
from rotator.core.observation import RotateNow
from rotator.daemon import Daemon
from rotator.daemon.metrics import Metrics
from rotator.demo.openbao import free_port
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.errors import RotatorError
from rotator.intercom import IntercomClient, RetryPolicy
from rotator.reconciler import Reconciler
from rotator.vault import Vault, VaultAuthError

PHASES = ("idle", "creating", "awaiting_rollout", "retiring", "blocked")
DAY = 86400.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def instrumented(world, metrics: Metrics) -> Reconciler:
    """A reconciler wired as the daemon's is: listener, Vault and Intercom hooks."""
    vault = Vault(
        world.settings.vault,
        environ=world.environ,
        observe=metrics.vault_request,
        auth_failed=metrics.vault_auth_failed,
    )
    reconciler = Reconciler(
        world.settings,
        vault,
        environ=world.environ,
        clock=world.clock,
        listeners=[metrics],
        client_factory=lambda target, token: IntercomClient(
            token,
            base_url=target.base_url,
            retry=RetryPolicy(attempts=2),
            sleep=lambda _s: None,
            observe=metrics.intercom_request,
        ),
    )
    world.reconcilers.append(reconciler)
    return reconciler


@pytest.fixture
def metrics(world) -> Metrics:
    return Metrics(clock=world.clock)


def registry_samples(metrics: Metrics) -> Samples:
    return parse(generate_latest(metrics.registry).decode())


def assert_seeded(seeded: Samples) -> None:
    """What the daemon shows at start for a target bootstrapped at START (30-day schedule)."""
    assert value(seeded, "rotator_build_info", version="0.1.0") == 1
    assert value(seeded, "rotator_target_blocked", target="web") == 0
    assert value(
        seeded, "rotator_last_successful_rotation_timestamp_seconds", target="web"
    ) == pytest.approx(START.timestamp())
    assert value(seeded, "rotator_next_rotation_timestamp_seconds", target="web") == pytest.approx(
        (START + timedelta(days=30)).timestamp()
    )
    assert value(seeded, "rotator_rotations_total", target="web", result="completed") == 0
    assert value(seeded, "rotator_secret_age_seconds", target="web") == 0
    assert value(seeded, "rotator_backoff_seconds", target="web") == 0


def test_a_scrape_follows_a_rotation_from_seed_to_retirement(world, metrics):
    """Seeded gauges at start, then phases, deadline, ages, outcomes and request counters."""
    bootstrap(world)
    reconciler = instrumented(world, metrics)
    clock = world.clock
    daemon = Daemon(
        world.settings,
        reconciler,
        reconciler.vault,
        environ=world.environ,
        clock=lambda: clock().timestamp(),
        metrics=metrics,
    )
    daemon.start()
    try:
        url = f"{daemon.server.url}/metrics"

        def scrape() -> Samples:
            answer = httpx.get(url)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/plain")
            return parse(answer.text)

        _wait(lambda: value(scrape(), "rotator_target_phase", target="web", phase="idle") == 1)
        assert_seeded(scrape())

        clock.advance(days=31)
        stored_at = clock()
        assert reconciler.reconcile_all()[0].phase == "awaiting_rollout"
        clock.advance(hours=1)
        waiting = scrape()
        for phase in PHASES:
            expected = 1 if phase == "awaiting_rollout" else 0
            assert value(waiting, "rotator_target_phase", target="web", phase=phase) == expected
        assert value(
            waiting, "rotator_rollout_deadline_timestamp_seconds", target="web"
        ) == pytest.approx((stored_at + timedelta(hours=24)).timestamp())
        assert value(waiting, "rotator_next_rotation_timestamp_seconds", target="web") is None
        assert value(waiting, "rotator_awaiting_rollout_current_seconds", target="web") == 3600
        assert value(waiting, "rotator_secret_age_seconds", target="web") == 3600
        for operation, status in (("list", "200"), ("create", "201")):
            assert (
                value(
                    waiting, "rotator_intercom_requests_total", operation=operation, status=status
                )
                == 1
            ), (operation, status)
        assert (
            value(waiting, "rotator_intercom_request_duration_seconds_count", operation="create")
            == 1
        )
        assert value(waiting, "rotator_vault_requests_total", operation="write", status="200") >= 3
        assert value(waiting, "rotator_vault_request_duration_seconds_count", operation="read") >= 1

        new = world.consumer()["intercom_id"]
        answer = httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm",
            json={"secret_id": new},
            headers={"Authorization": f"Bearer {HOOK_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        _wait(lambda: value(scrape(), "rotator_target_phase", target="web", phase="idle") == 1)
        done = scrape()
    finally:
        daemon.stop()
    assert value(done, "rotator_rotations_total", target="web", result="completed") == 1
    for result in ("emergency", "blocked", "failed"):
        assert value(done, "rotator_rotations_total", target="web", result=result) == 0
    assert value(done, "rotator_awaiting_rollout_seconds_count", target="web") == 1
    assert value(done, "rotator_awaiting_rollout_seconds_sum", target="web") == 3600
    assert value(done, "rotator_awaiting_rollout_seconds_bucket", target="web", le="3600.0") == 1
    assert value(done, "rotator_awaiting_rollout_seconds_bucket", target="web", le="900.0") == 0
    assert value(done, "rotator_awaiting_rollout_current_seconds", target="web") == 0
    assert value(
        done, "rotator_last_successful_rotation_timestamp_seconds", target="web"
    ) == pytest.approx(clock().timestamp())
    assert value(done, "rotator_next_rotation_timestamp_seconds", target="web") == pytest.approx(
        (stored_at + timedelta(days=30)).timestamp()
    )
    assert value(done, "rotator_rollout_deadline_timestamp_seconds", target="web") is None
    assert value(done, "rotator_intercom_requests_total", operation="delete", status="204") == 1


def test_no_id_secret_or_token_reaches_the_scrape(world, metrics):
    """Labels hold target names, phases, operations and statuses; never ids or material."""
    bootstrap(world)
    reconciler = instrumented(world, metrics)
    reconciler.reconcile_target("web", RotateNow())
    world.clock.advance(days=2)
    reconciler.reconcile_all()
    reconciler.reconcile_target("web", RotateNow(emergency=True))
    text = generate_latest(metrics.registry).decode()
    samples = parse(text)
    assert value(samples, "rotator_rotations_total", target="web", result="emergency") == 1
    assert value(samples, "rotator_rotations_total", target="web", result="completed") == 1
    record = world.record()
    secrets = world.emulator.store.all()
    ids = {s.id for s in secrets} | {h.rotation_id for h in record.history}
    allowed = {"target", "result", "kind", "phase", "operation", "status", "version", "le"}
    allowed.add("reason")  # why a Vault request was made: a fixed set of words
    for _, labels in samples:
        for label, label_value in labels:
            assert label in allowed, label
            # Statuses and bucket bounds are numbers that an id may happen to equal.
            assert label in {"status", "le"} or label_value not in ids, (label, label_value)
    for secret in secrets:
        assert secret.secret not in text
        assert secret.name not in text
    for token in (HOOK_TOKEN, HMAC_KEY, INTERCOM_EMULATOR_TOKEN, world.openbao.root_token):
        assert token not in text
    for h in record.history:
        assert h.rotation_id not in text


def test_failures_blocks_and_backoff_are_counted(world, metrics):
    """A 5xx burst is a temporary failure with a backoff; a revoked token blocks the target."""
    bootstrap(world)
    reconciler = instrumented(world, metrics)
    world.emulator.set_faults("5xx=1:503")
    world.clock.advance(days=31)
    assert reconciler.reconcile_all()[0].phase == "idle"
    failing = registry_samples(metrics)
    assert value(failing, "rotator_rotations_total", target="web", result="failed") == 1
    assert value(failing, "rotator_failures_total", target="web", kind="temporary") == 1
    assert value(failing, "rotator_failures_total", target="web", kind="permanent") == 0
    assert value(failing, "rotator_backoff_seconds", target="web") == 10
    assert value(failing, "rotator_intercom_requests_total", operation="list", status="503") == 2
    world.clock.advance(seconds=4)
    assert value(registry_samples(metrics), "rotator_backoff_seconds", target="web") == 6

    world.emulator.set_faults("")
    world.emulator.revoke_token(INTERCOM_EMULATOR_TOKEN)
    reconciler.close()  # the cached client holds the old token
    world.clock.advance(minutes=5)
    assert reconciler.reconcile_all()[0].phase == "blocked"
    blocked = registry_samples(metrics)
    assert value(blocked, "rotator_target_blocked", target="web") == 1
    assert value(blocked, "rotator_target_phase", target="web", phase="blocked") == 1
    assert value(blocked, "rotator_rotations_total", target="web", result="blocked") == 1
    assert value(blocked, "rotator_failures_total", target="web", kind="permanent") == 1
    assert value(blocked, "rotator_next_rotation_timestamp_seconds", target="web") is None
    assert value(blocked, "rotator_intercom_requests_total", operation="list", status="401") == 1


def test_vault_requests_failed_logins_and_transport_errors_are_counted(
    world, metrics, openbao, vault_settings
):
    """Vault statuses as answered (a missing path is 404), a refused token counts as an auth
    failure, and an unreachable server is status "error" but not an auth failure."""
    vault = Vault(
        vault_settings,
        environ=world.environ,
        observe=metrics.vault_request,
        auth_failed=metrics.vault_auth_failed,
    )
    assert vault.read(f"{vault_settings.state_path}/nothing").data is None
    vault.close()
    refused = Vault(
        vault_settings,
        environ={"VAULT_TOKEN": "not-a-valid-token-0123"},
        observe=metrics.vault_request,
        auth_failed=metrics.vault_auth_failed,
    )
    with pytest.raises(VaultAuthError):
        refused.read("anything")
    refused.close()
    nowhere = VaultSettings(
        address=f"http://127.0.0.1:{free_port()}", auth=VaultAuthSettings(method="token")
    )
    down = Vault(
        nowhere,
        environ=world.environ,
        attempts=1,
        observe=metrics.vault_request,
        auth_failed=metrics.vault_auth_failed,
    )
    with pytest.raises(RotatorError):
        down.read("anything")
    down.close()
    client = IntercomClient(
        INTERCOM_EMULATOR_TOKEN,
        base_url=nowhere.address,
        retry=RetryPolicy(attempts=2),
        sleep=lambda _s: None,
        observe=metrics.intercom_request,
    )
    with pytest.raises(RotatorError):
        client.list_secrets()
    client.close()
    samples = registry_samples(metrics)
    assert value(samples, "rotator_vault_requests_total", operation="login", status="200") == 1
    assert value(samples, "rotator_vault_requests_total", operation="read", status="404") == 1
    assert value(samples, "rotator_vault_requests_total", operation="login", status="403") == 1
    assert value(samples, "rotator_vault_requests_total", operation="login", status="error") == 1
    # Only the refusal: an outage is not a credentials problem (RotatorVaultAuthFailing).
    assert value(samples, "rotator_vault_auth_failures_total") == 1
    assert value(samples, "rotator_intercom_requests_total", operation="list", status="error") == 2


def test_the_daemon_process_serves_metrics(setup):
    """`rotator run` serves /metrics, seeded from Vault and counting its Vault requests."""
    _, env, port = setup
    assert run(env, "reconcile").returncode == 0
    with subprocess.Popen(
        [*ROTATOR, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as daemon:
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_up(url, daemon)

            def seeded() -> bool:
                samples = parse(httpx.get(f"{url}/metrics").text)
                return value(samples, "rotator_target_phase", target="web", phase="idle") == 1

            _wait(seeded)
            samples = parse(httpx.get(f"{url}/metrics").text)
        finally:
            daemon.terminate()
            daemon.wait(timeout=10)
    assert value(samples, "rotator_vault_requests_total", operation="read", status="200") >= 1
    assert value(samples, "rotator_target_blocked", target="web") == 0
    assert value(samples, "rotator_secret_age_seconds", target="web") >= 0
    assert CLI_HOOK_TOKEN not in str(samples)


def test_one_shot_commands_never_import_prometheus_client(setup):
    """`rotator reconcile` (the CronJob) runs without importing prometheus_client."""
    _, env, _ = setup
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rotator", "reconcile"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "web: idle" in result.stdout
    assert "rotator.cli.rotate" in result.stderr  # the import log is really there
    assert "prometheus_client" not in result.stderr
    assert "rotator.daemon.metrics" not in result.stderr


def test_metrics_follow_what_other_processes_did(world, metrics):
    """A rotation done by another process (a CLI rotate-now) shows in the daemon's metrics once
    its next pass reads the record; a pass that cannot read raises the pass-failing gauge."""
    bootstrap(world)
    daemon_side = world.reconciler(listeners=[metrics])
    daemon_side.reconcile_all()
    world.reconciler(me="cli").reconcile_target("web", RotateNow())  # not the daemon
    daemon_side.reconcile_all()
    samples = registry_samples(metrics)
    assert value(samples, "rotator_target_phase", target="web", phase="awaiting_rollout") == 1
    world.clock.advance(days=2)
    world.reconciler(me="cli").reconcile_all()
    daemon_side.reconcile_all()
    samples = registry_samples(metrics)
    assert value(samples, "rotator_target_phase", target="web", phase="idle") == 1
    assert value(samples, "rotator_rotations_total", target="web", result="completed") == 1
    assert value(samples, "rotator_target_pass_failing", target="web") == 0
    metrics.on_seen(None, world.target, "Vault refused the state path")
    assert value(registry_samples(metrics), "rotator_target_pass_failing", target="web") == 1
