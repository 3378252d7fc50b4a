"""What a second adversarial review of the issue 9 rewrite broke, each replayed (real OpenBao and
the emulator, real processes where the scenario is about processes; the in-memory simulation for
a Vault clock stepped back, which OpenBao cannot do).

Each test's first sentence states the rule it proves; the rest is the break it replays.
"""

from __future__ import annotations

import base64
import json
import os
import random
from datetime import datetime, timedelta

import httpx
import pytest
from simulation.actors import Commands, Process
from simulation.world import World
from test_adopt_doctor import legacy
from test_regressions import gated_reconciler
from test_rotation import HMAC_KEY, bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here
from test_safety_findings import Cli, hand_made
from test_safety_findings import cli as cli  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli.adopt import adopt_secret
from rotator.core.observation import RotateNow
from rotator.emulator import Token, user_hash
from rotator.errors import LocalError
from rotator.intercom import IntercomClient, Platforms
from rotator.reconciler import Reconciler
from rotator.signing import signature_headers
from rotator.vault import Vault

STAGING_TOKEN = "staging-token-0123456789"


def write_consumer(world, data) -> None:
    vault = Vault(world.settings.vault, environ=world.environ)
    try:
        vault.write(world.target.vault_path, data, cas=vault.read(world.target.vault_path).version)
    finally:
        vault.close()


def live(world, secret_id: str) -> bool:
    return world.emulator.store.get(secret_id).deleted_at is None


def blocked_rotation(world) -> str:
    """A rotation awaiting rollout, blocked by a restored backup of the consumers' path; the
    old (current) secret's id."""
    old = bootstrap(world)
    old_data = world.consumer()
    world.reconciler().reconcile_target("web", RotateNow())
    write_consumer(world, old_data)
    world.reconciler().reconcile_all()
    assert world.record().phase.value == "blocked"
    return old


@pytest.mark.parametrize("emergency", [True, False], ids=["emergency", "resume"])
def test_rotate_now_on_a_blocked_rotation_is_recorded_before_intercom_fails(world, emergency):
    """rotate-now on a blocked rotation is recorded before any call that can fail, so the next
    pass of any process resumes it (and retires a leaked secret). Break: only the emergency flag
    was written; with Intercom failing, the resume was lost and the leaked secret stayed live."""
    leaked = blocked_rotation(world)
    failing = gated_reconciler(world, "operator", {"list_fails": True})
    failing.reconcile_target("web", RotateNow(emergency=emergency))
    for _ in range(3):
        world.clock.advance(minutes=30)
        world.reconciler(me="daemon").reconcile_all()
    assert world.record().phase.value != "blocked"
    if emergency:
        assert not live(world, leaked), "the emergency on a blocked rotation was lost"


def test_the_old_secret_waits_while_a_list_omits_the_new_one_stored_long_ago(world):
    """An old secret is not retired while Intercom's list omits its replacement, stored longer
    ago than lists lag: it may be the last live secret. Break: the new secret deleted outside
    rotator, the first list that omitted it still retired the old one."""
    old = bootstrap(world)
    world.reconciler().reconcile_target("web", RotateNow())
    new = world.record().pending_id
    world.emulator.store.delete("default", new)
    world.clock.advance(hours=25)
    world.reconciler().reconcile_all()
    assert live(world, old), "the old secret was deleted although its replacement is gone"
    world.clock.advance(minutes=6)
    world.reconciler().reconcile_all()
    record = world.record()
    assert record.phase.value == "blocked"
    assert "has not listed the new secret" in record.blocked_reason


@pytest.mark.target(rotate_on_drift=True)
def test_a_restored_secret_rotator_retired_is_never_adopted(world):
    """A secret Intercom answered rotator's DELETE for is gone, even while a lagging list shows
    it: put back at the consumers' path, it is replaced by a new secret, never adopted. Break:
    it was adopted (a lagging list showed it) and the only live secret was retired for it."""
    old = bootstrap(world)
    old_data = world.consumer()
    world.reconciler().reconcile_target("web", RotateNow())
    current = world.record().pending_id
    assert world.reconciler().confirm("web", secret_id=current, rotation_id=None, via="t").status
    world.reconciler().reconcile_target("web")
    assert not live(world, old)
    world.emulator.set_faults("list_lag=1:1h")  # every list still shows the retired secret
    write_consumer(world, old_data)  # a backup restored: consumers hold a dead secret
    world.clock.advance(minutes=1)
    world.reconciler().reconcile_all()
    record = world.record()
    assert record.pending_id not in {None, old}, "the retired secret was adopted"
    assert world.consumer()["intercom_id"] == record.pending_id
    assert live(world, record.pending_id)
    assert live(world, current), "the current secret goes only after the new one's rollout"


def test_a_process_for_another_consumers_path_refuses(world):
    """A record belongs to one consumers' path: a process configured with another (a stale
    config) refuses, writes nothing, deletes nothing. Break: it read an empty path, stored its
    own secret there, and retired the secret consumers really held."""
    old = bootstrap(world)
    target = world.target.model_copy(update={"vault_path": world.target.vault_path + "-old"})
    stale = world.settings.model_copy(update={"targets": [target]})
    vault = Vault(stale.vault, environ=world.environ)
    laptop = Reconciler(stale, vault, environ=world.environ, clock=world.clock, me="laptop")
    try:
        with pytest.raises(LocalError, match="belongs to the consumers' path"):
            laptop.reconcile_target("web", RotateNow(emergency=True))
        world.clock.advance(days=31)  # due: the pass would act, so it checks, and refuses
        assert "belongs to the consumers' path" in str(laptop.reconcile_all()[0].error)
    finally:
        laptop.close()
        vault.close()
    assert live(world, old)
    assert world.record().phase.value == "idle"


def test_another_workspace_cannot_take_over_a_record_with_an_orphan(cli: Cli):
    """A record bound to one workspace, that made a secret there (an orphan of a lost create),
    is refused to a process of another workspace. Break: with no current secret, staging
    created its own and stored it at production's consumers' path."""
    killed = cli.run("reconcile", failpoints="intercom.after_create=kill")
    assert killed.returncode == -9
    assert len(cli.emulator.store.all("default")) == 1
    cli.emulator.emulator.add_token(Token.parse(f"{STAGING_TOKEN}:read,write:staging"))
    env = cli.environment("staging.toml", cli.emulator.url, STAGING_TOKEN)
    refused = cli.run("reconcile", env=env)
    assert refused.returncode == 1
    assert "workspace" in refused.stdout + refused.stderr
    assert cli.emulator.store.all("staging") == []
    assert cli.consumer() == {}


def test_another_workspace_cannot_confirm(cli: Cli):
    """A confirmation from a process of another workspace is refused and changes nothing.
    Break: staging's `rotator confirm` recorded a confirmation production then acted on."""
    old = cli.provision()
    assert cli.run("rotate-now", "web").returncode == 0
    cli.emulator.emulator.add_token(Token.parse(f"{STAGING_TOKEN}:read,write:staging"))
    env = cli.environment("staging.toml", cli.emulator.url, STAGING_TOKEN)
    refused = cli.run("confirm", "web", env=env)
    assert refused.returncode != 0
    assert cli.status()["confirmed_at"] is None
    assert cli.run("reconcile").returncode == 0
    assert cli.live(old)


def test_a_signed_confirmation_replayed_after_a_new_store_is_refused(world):
    """A signed confirmation dated before the secret's latest store is refused (409 stale), so
    a replay to another replica cannot confirm a store it never saw. Break: replayed two minutes
    later to a replica with its own replay cache, it retired the old secret at once."""
    old = bootstrap(world)
    old_data = world.consumer()
    replica_a, replica_b = world.reconciler(me="a"), world.reconciler(me="b")
    replica_a.reconcile_target("web", RotateNow())
    new_data = world.consumer()
    body = json.dumps({"secret_id": new_data["intercom_id"]}).encode()
    headers = {
        **signature_headers(HMAC_KEY, body, world.clock().timestamp()),
        "Content-Type": "application/json",
    }
    assert post(world, replica_a, body, headers).status_code == 200
    write_consumer(world, old_data)  # a backup restored before the retirement pass ...
    replica_a.reconcile_all()
    write_consumer(world, new_data)  # ... then the new value put back, and resumed
    world.clock.advance(seconds=30)
    replica_a.reconcile_target("web", RotateNow())
    assert world.record().confirmed_at is None
    world.clock.advance(seconds=90)
    replayed = post(world, replica_b, body, headers)
    assert replayed.status_code == 409
    assert replayed.json()["error"]["code"] == "stale"
    replica_b.reconcile_all()
    assert live(world, old)


def post(world, reconciler, body: bytes, headers: dict[str, str]) -> httpx.Response:
    daemon = world.daemon(reconciler)
    daemon.server.start()
    try:
        return httpx.post(
            f"{daemon.server.url}/v1/targets/web/confirm", content=body, headers=headers
        )
    finally:
        daemon.server.stop()


def test_a_vault_clock_stepped_back_is_followed_before_a_deadline_is_judged():
    """After Vault's clock is stepped back (NTP), a long-running process judges deadlines on the
    corrected time at its next pass. Break: it kept the old, fast time for 64 answers and retired
    an old secret 10 s into a 1 h grace."""
    day = 86400.0
    world = World(random.Random(7))
    world.now += 2 * day  # Vault runs two days fast
    daemon = Process(world, "daemon", mono_offset=-world.now + 5000.0, skew=0.0)
    daemon.boot()
    Commands(daemon).daemon_pass()
    world.now -= 2 * day - 60  # NTP steps it back; monotonic clocks do not move
    daemon.mono_offset += 2 * day
    operator = Process(world, "operator", mono_offset=-world.now + 9000.0, skew=0.0)
    operator.boot()
    Commands(operator).rotate_now(emergency=False)
    record = world.state_record()
    assert record is not None
    assert record.phase.value == "awaiting_rollout"
    world.now += 10
    Commands(daemon).daemon_pass()
    assert world.live(str(record.current_id)), "deleted 10 s into a 1 h grace"


def test_an_adopted_secret_rewritten_with_other_material_blocks(world):
    """An adoption knows the fingerprint of what it stored: the consumers' path rewritten under
    the adopted id with other material blocks instead of retiring the old secret. Break: the
    record kept no fingerprint, and the old secret was retired while consumers signed with
    material Intercom never issued."""
    old = bootstrap(world)
    secret_id, material = legacy(world)
    adopt_secret(world.parts(), world.target, secret_id, material, force=True, now=world.clock())
    data = world.consumer()
    data["secret"] = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    write_consumer(world, data)
    for _ in range(2):
        world.clock.advance(hours=25)
        world.reconciler().reconcile_all()
    assert live(world, old)
    assert world.record().phase.value == "blocked"
    assert not world.emulator.store.verify("default", "u", user_hash(data["secret"], "u"))


def test_a_forced_takeover_by_another_workspace_claims_no_retirement(cli: Cli):
    """adopt --force from another workspace takes the record over without claiming it retired a
    secret it cannot reach. Break: production's secret was 'retired' by a DELETE sent to the
    staging workspace (404), and history said so while it was live."""
    old = cli.provision()
    cli.emulator.emulator.add_token(Token.parse(f"{STAGING_TOKEN}:read,write:staging"))
    client = IntercomClient(STAGING_TOKEN, base_url=cli.emulator.url)
    try:
        made = client.create_secret("Web (staging)", Platforms(web=True))
    finally:
        client.close()
    env = cli.environment("staging.toml", cli.emulator.url, STAGING_TOKEN)
    adopted = cli.run(
        "adopt", "web", "--secret-id", made.info.id, "--force", stdin=made.secret.reveal(), env=env
    )
    assert adopted.returncode == 0, adopted.stderr
    assert "no longer tracked" in adopted.stdout
    cli.run("confirm", "web", env=env)
    status = json.loads(cli.run("status", "--json", "--history", env=env).stdout)[0]
    retired = [i for entry in status["history"] for i in entry["retired_ids"]]
    assert old not in retired
    assert cli.live(old)


@pytest.mark.target(confirmation="hook")
def test_rotate_now_resumes_a_rotation_whose_new_secret_went_missing(world):
    """A rotation blocked because its new secret stayed unlisted resumes on rotate-now, as its
    message says. Break: the absence survived the resume, which blocked again at once."""
    old = bootstrap(world)
    world.reconciler().reconcile_target("web", RotateNow())
    world.emulator.store.delete("default", world.record().pending_id)
    world.clock.advance(hours=25)
    world.reconciler().reconcile_all()
    world.clock.advance(minutes=6)
    world.reconciler().reconcile_all()
    assert world.record().phase.value == "blocked"
    world.clock.advance(hours=1)
    world.reconciler().reconcile_target("web", RotateNow())
    assert world.record().phase.value != "blocked"
    assert live(world, old)


def test_material_written_under_intercom_id_is_never_echoed(cli: Cli):
    """A consumers' path written by hand with its fields swapped (material under intercom_id)
    never puts the material on a terminal or in a log. Break: the binding refusal quoted it."""
    secret_id, material = hand_made(cli.emulator, "Legacy Web")
    cli.write_consumer(
        {
            "secret": secret_id,
            "intercom_id": material,
            "name": "Legacy Web",
            "created_at": None,
            "rotation_id": None,
        }
    )
    cli.run("reconcile")  # Cli.run fails the test if any issued material is printed
    assert material not in cli.run("status", "--json").stdout


def test_a_version_1_rollout_starts_again_on_vaults_clock(cli: Cli):
    """A rollout recorded by the previous schema restarts its grace on Vault's clock: its
    deadline was a process's wall clock. Break: a deadline written by a storer two days slow
    retired the old secret seconds after the store."""
    old = cli.provision()
    assert cli.run("rotate-now", "web").returncode == 0
    vault = Vault(cli.vault_settings, environ={"VAULT_TOKEN": cli.openbao.root_token})
    key = f"{cli.state}/web"
    try:
        entry = vault.read(key)
        data = dict(entry.data or {})
        stored = datetime.fromisoformat(data["stored_at"]) - timedelta(days=2)
        data.update(
            schema_version=1,
            stored_at=stored.isoformat(),
            deadline=(stored + timedelta(hours=24)).isoformat(),
            lease=None,
        )
        for key_v2 in ("stored_version", "binding", "request", "adoption", "retired_ids"):
            data.pop(key_v2, None)
        vault.write(key, data, cas=entry.version)
    finally:
        vault.close()
    assert cli.run("reconcile").returncode == 0
    assert cli.live(old)
    assert cli.status()["phase"] == "awaiting_rollout"
