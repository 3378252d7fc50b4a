"""Adoption and drift: `rotator adopt` and `rotator doctor` on OpenBao and the emulator.

In-process tests drive ``rotator.cli.adopt.adopt_secret`` and ``rotator.cli.doctor.examine`` with the
``world``'s injected clock (rotations "later"); CLI tests run real `rotator` processes with a
config file, as users do, and check exit codes and that no material is ever printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from test_rotation import bootstrap, make_settings
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.cli import doctor
from rotator.cli.adopt import adopt_secret
from rotator.cli.context import UsageError
from rotator.config import ConfigError, parse_settings
from rotator.config.consumers import ConsumerSettings
from rotator.core.adoption import AdoptionRefused, adopted
from rotator.core.observation import RotateNow
from rotator.core.record import Phase, Record
from rotator.emulator import Token
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.intercom import IntercomClient, Platforms
from rotator.redaction import SecretValue
from rotator.vault import Vault

ROTATOR = [sys.executable, "-m", "rotator"]
CONFIG = """\
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
grace_period = "24h"
rotate_on_drift = {drift}
"""


def legacy(world, name: str = "Production Web (legacy)"):
    """A secret created by hand at Intercom, before rotator: its id and material."""
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=world.emulator.url)
    try:
        created = client.create_secret(name, Platforms.from_names(world.target.platforms))
    finally:
        client.close()
    return created.info.id, created.secret


def findings(world, **kwargs):
    return doctor.examine(world.parts(), ["web"], **kwargs)


def by_check(found, check):
    return [f for f in found if f.check == check]


# --- adopt, in process --------------------------------------------------------------------------


def test_adopt_then_a_rotation_retires_the_adopted_secret_after_grace(world):
    """An adopted secret lands at the consumers' path, becomes current, and is retired by the
    first rotation once its grace period has passed."""
    secret_id, material = legacy(world)
    lines = adopt_secret(
        world.parts(), world.target, secret_id, material, force=False, now=world.clock()
    )
    assert any(material.fingerprint() in line for line in lines)
    data = world.consumer()
    assert data["secret"] == material.reveal()
    assert (data["intercom_id"], data["name"], data["rotation_id"]) == (
        secret_id,
        "Production Web (legacy)",
        None,
    )
    record = world.record()
    assert (record.current_id, record.phase, record.last_rotation_at) == (
        secret_id,
        Phase.IDLE,
        world.clock(),
    )
    assert secret_id in record.known_ids
    reconciler = world.reconciler()
    assert reconciler.reconcile_all()[0].reason == "not due"
    world.clock.advance(days=31)
    assert reconciler.reconcile_all()[0].phase == "awaiting_rollout"
    assert secret_id in world.live()
    world.clock.advance(hours=25)
    assert reconciler.reconcile_all()[0].phase == "idle"
    assert world.emulator.store.get(secret_id).deleted_at is not None
    assert world.live() == [world.consumer()["intercom_id"]]


def test_forced_adoption_over_the_targets_own_secret_retires_it_after_grace(world):
    """--force over the target's current secret waits for rollout, then deletes the old one."""
    old = bootstrap(world)
    secret_id, material = legacy(world)
    with pytest.raises(UsageError, match=rf"holds secret {old} \(this target's current"):
        adopt_secret(world.parts(), world.target, secret_id, material, force=False)
    lines = adopt_secret(
        world.parts(), world.target, secret_id, material, force=True, now=world.clock()
    )
    assert any(f"secret {old} is retired after the grace period" in line for line in lines)
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    world.clock.advance(hours=25)
    assert world.reconciler().reconcile_all()[0].phase == "idle"
    assert world.live() == [secret_id]
    assert world.record().current_id == secret_id


def test_adopting_during_a_rotation_is_refused_and_changes_nothing(world):
    """A record in awaiting_rollout refuses adoption; the consumers' path is left as it was."""
    bootstrap(world)
    world.reconciler().reconcile_target("web", RotateNow())
    before = world.consumer()
    secret_id, material = legacy(world)
    with pytest.raises(UsageError, match="is in progress"):
        adopt_secret(world.parts(), world.target, secret_id, material, force=True)
    assert world.consumer() == before


def test_a_record_blocked_mid_rotation_refuses_adoption():
    """The pure rule: a rotation blocked in creating is still in progress."""
    record = Record(
        target="web", phase=Phase.BLOCKED, resume_phase=Phase.CREATING, rotation_id="r1"
    )
    with pytest.raises(AdoptionRefused, match="in creating"):
        adopted(
            record,
            target="web",
            secret_id="7",
            grace_period=timedelta(hours=1),
            now=datetime.now(UTC),
            fresh="ab" * 8,
            version=1,
            fingerprint="sha256:x",
        )


# --- adopt, as users run it --------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path, openbao, emulator, vault_settings):
    """Write a config (``drift`` sets rotate_on_drift) and return an environment for it."""

    def configure(*, drift: bool = False, vault_token: str | None = None) -> dict[str, str]:
        config = tmp_path / "rotator.toml"
        config.write_text(
            CONFIG.format(
                vault=openbao.address,
                state=vault_settings.state_path,
                intercom=emulator.url,
                path=vault_settings.state_path.replace("/state", "/web"),
                drift="true" if drift else "false",
            )
        )
        return {
            **os.environ,
            "VAULT_TOKEN": vault_token or openbao.root_token,
            "INTERCOM_TOKEN": INTERCOM_EMULATOR_TOKEN,
            "ROTATOR_CONFIG": str(config),
            "ROTATOR_LOG_LEVEL": "info",
        }

    return configure


def run(env, *args, stdin=None, emulator=None):
    result = subprocess.run(
        [*ROTATOR, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
        input=stdin,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    for secret in emulator.store.all() if emulator else ():
        assert secret.secret not in output, "secret material was printed"
    return result


def test_cli_adopt_prints_the_id_and_fingerprint_never_the_material(cli, emulator):
    """`rotator adopt` with the material on stdin exits 0 and names id and fingerprint only."""
    env = cli()
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=emulator.url)
    created = client.create_secret("Production Web", Platforms(web=True))
    client.close()
    result = run(
        env,
        "adopt",
        "web",
        "--secret-id",
        created.info.id,
        stdin=created.secret.reveal() + "\n",
        emulator=emulator,
    )
    assert result.returncode == 0, result.stderr
    assert f"adopted secret {created.info.id}" in result.stdout
    assert created.secret.fingerprint() in result.stdout
    again = run(
        env,
        "adopt",
        "web",
        "--secret-id",
        created.info.id,
        stdin=created.secret.reveal(),
        emulator=emulator,
    )
    assert again.returncode == 0, again.stderr
    assert "already adopted" in again.stdout
    status = json.loads(run(env, "status", "--json").stdout)[0]
    assert status["current_secret_id"] == created.info.id


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("adopt", "mobile", "--secret-id", "1"), "A" * 43, "no target named 'mobile'"),
        (("adopt", "web", "--secret-id", "not an id"), "A" * 43, "--secret-id"),
        (("adopt", "web", "--secret-id", "424242"), "A" * 43, "is not live at Intercom"),
        (("adopt", "web", "--secret-id", "1"), "", "no secret material on stdin"),
        (("adopt", "web", "--secret-id", "1"), "\n\n", "no secret material on stdin"),
    ],
)
def test_cli_adopt_refusals_exit_2(cli, emulator, args, stdin, message):
    """An unknown target, a malformed or unknown id, or no material: exit 2, nothing written."""
    env = cli()
    result = run(env, *args, stdin=stdin, emulator=emulator)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    status = json.loads(run(env, "status", "--json").stdout)[0]
    assert status["consumer_secret_id"] is None


def test_cli_adopt_over_another_secret_needs_force(cli, emulator):
    """A consumers' path holding another id is replaced only with --force, and says why."""
    env = cli()
    assert run(env, "reconcile").returncode == 0
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=emulator.url)
    created = client.create_secret("Production Web (legacy)", Platforms(web=True))
    client.close()
    material = created.secret.reveal()
    refused = run(
        env, "adopt", "web", "--secret-id", created.info.id, stdin=material, emulator=emulator
    )
    assert refused.returncode == 2
    assert "Add --force" in refused.stderr
    forced = run(
        env,
        "adopt",
        "web",
        "--secret-id",
        created.info.id,
        "--force",
        stdin=material,
        emulator=emulator,
    )
    assert forced.returncode == 0, forced.stderr
    assert "is retired after the grace period" in forced.stdout


def test_cli_adopt_during_a_rotation_exits_2(cli, emulator):
    """A rotation in progress refuses adoption with exit 2 and says so."""
    env = cli()
    assert run(env, "reconcile").returncode == 0
    assert run(env, "rotate-now", "web").returncode == 0
    first = emulator.store.all()[0]
    result = run(
        env, "adopt", "web", "--secret-id", first.id, stdin=first.secret, emulator=emulator
    )
    assert result.returncode == 2
    assert "in progress" in result.stderr


def test_cli_adopt_with_a_rejected_intercom_token_exits_1(cli, emulator):
    """Intercom refusing the token is a failure of a system, not of usage: exit 1."""
    env = {**cli(), "INTERCOM_TOKEN": "revoked-0123456789"}
    result = run(env, "adopt", "web", "--secret-id", "1", stdin="A" * 43, emulator=emulator)
    assert result.returncode == 1
    assert "rejected the access token" in result.stderr


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_on_a_healthy_target_exits_0(cli, emulator):
    """After a first pass, every finding is ok and doctor exits 0."""
    env = cli()
    assert run(env, "reconcile").returncode == 0
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["severity"] == "ok", report
    checks = {f["check"] for f in report["findings"]}
    assert {"vault.health", "vault.read", "vault.capabilities", "intercom.read"} <= checks
    text = run(env, "doctor", "web", emulator=emulator)
    assert text.returncode == 0
    assert "0 error(s), 0 warning(s)" in text.stdout


def test_doctor_names_a_revoked_intercom_token_and_the_fix(cli, emulator):
    """A 401 on list is an error whose fix is to issue a new token; exit 1."""
    env = {**cli(), "INTERCOM_TOKEN": "revoked-0123456789"}
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 1
    [finding] = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "intercom.read"]
    assert finding["severity"] == "error"
    assert "token rejected: issue a new one" in finding["fix"]


def test_doctor_warns_of_an_unknown_intercom_secret(cli, emulator):
    """A live secret under the target's name that rotator does not know is a warning."""
    env = cli()
    assert run(env, "reconcile").returncode == 0
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=emulator.url)
    stray = client.create_secret("Production Web (by hand)", Platforms(web=True))
    client.create_secret("Another App", Platforms(web=True))
    client.close()
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 0
    unknown = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "drift.unknown"]
    assert [f["severity"] for f in unknown] == ["warning"]
    assert f"unknown secret {stray.info.id}" in unknown[0]["message"]
    assert "rotator adopt web" in unknown[0]["fix"]


def test_doctor_reports_a_consumer_secret_deleted_at_intercom(cli, emulator):
    """Consumers holding a deleted secret is an error with rotate-now as the fix."""
    env = cli()
    assert run(env, "reconcile").returncode == 0
    [held] = emulator.store.live("default")
    emulator.store.delete("default", held.id)
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 1
    [finding] = [
        f for f in json.loads(result.stdout)["findings"] if f["check"] == "drift.consumer_deleted"
    ]
    assert finding["severity"] == "error"
    assert "consumers hold a secret Intercom did not list" in finding["message"]
    assert "rotator rotate-now web --emergency --yes" in finding["fix"]
    assert emulator.store.live("default") == [], "doctor changed nothing"


def test_doctor_with_rotate_on_drift_passes_over_an_unlisted_consumer_secret(cli, emulator):
    """With rotate_on_drift, doctor runs a pass over a target whose consumers' secret a list
    omits, and says the pass rotates it once it stays unlisted longer than lists lag (one list
    proves nothing); nothing is created yet."""
    env = cli(drift=True)
    assert run(env, "reconcile").returncode == 0
    [held] = emulator.store.live("default")
    emulator.store.delete("default", held.id)
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 1, result.stdout
    [finding] = [
        f for f in json.loads(result.stdout)["findings"] if f["check"] == "drift.consumer_deleted"
    ]
    assert (
        "rotate_on_drift rotates it once it has stayed unlisted for 5 minutes" in finding["message"]
    )
    assert emulator.store.live("default") == []
    assert json.loads(run(env, "status", "--json").stdout)[0]["phase"] == "idle"


def test_a_normal_pass_with_rotate_on_drift_replaces_a_deleted_consumer_secret(
    world, openbao, emulator, vault_settings
):
    """rotate_on_drift makes an idle, not-yet-due pass list Intercom, and rotate once the
    consumers' secret has stayed unlisted longer than lists lag."""
    world.settings = make_settings(openbao, emulator, vault_settings, rotate_on_drift=True)
    held = bootstrap(world)
    world.emulator.store.delete("default", held)
    world.clock.advance(hours=1)
    [report] = world.reconciler().reconcile_all()
    assert report.phase == "idle"
    world.clock.advance(minutes=5)
    [report] = world.reconciler().reconcile_all()
    assert report.phase == "awaiting_rollout"
    assert world.consumer()["intercom_id"] in world.live()


def test_doctor_reports_a_blocked_target(cli, emulator):
    """A blocked target is an error carrying its reason and the rotate-now fix."""
    env = cli()
    assert run({**env, "INTERCOM_TOKEN": "revoked-0123456789"}, "reconcile").returncode == 1
    result = run(env, "doctor", "--json", emulator=emulator)
    assert result.returncode == 1
    [finding] = [f for f in json.loads(result.stdout)["findings"] if f["check"] == "record.blocked"]
    assert "rejected the access token" in finding["message"]
    assert finding["fix"] == "fix the cause, then rotator rotate-now web"


def test_doctor_names_the_missing_write_capability_on_the_state_path(
    cli, openbao, emulator, vault_settings
):
    """A Vault token that may only read the state path: error naming path and capability."""
    prefix = vault_settings.state_path.rsplit("/", 1)[0]
    assert run(cli(), "reconcile").returncode == 0
    openbao.write_policy(
        f"doctor-{prefix.replace('/', '-')}",
        f'path "secret/data/{prefix}/state/*" {{ capabilities = ["read"] }}\n'
        f'path "secret/data/{prefix}/web" {{ capabilities = ["create", "read", "update"] }}\n',
    )
    token = openbao.create_token([f"doctor-{prefix.replace('/', '-')}"])
    result = run(cli(vault_token=token), "doctor", "--json", emulator=emulator)
    assert result.returncode == 1
    errors = [
        f
        for f in json.loads(result.stdout)["findings"]
        if f["check"] == "vault.capabilities" and f["severity"] == "error"
    ]
    assert len(errors) == 1
    state = f"secret/data/{vault_settings.state_path}/web"
    assert f"lacks create, update on {state}" in errors[0]["message"]
    assert state in errors[0]["fix"]


def test_doctor_names_a_missing_write_scope_after_a_403_on_create(world):
    """After Intercom refused a create for lack of the write scope, doctor says so."""
    world.emulator.emulator.add_token(Token.parse("read-only-token:read"))
    world.environ["INTERCOM_TOKEN"] = "read-only-token"
    assert world.reconciler().reconcile_all()[0].phase == "blocked"
    assert world.record().missing_scope == "write_secure_mode_secret"  # a type, not a wording
    found = findings(world)
    [scope] = by_check(found, "intercom.write_scope")
    assert scope.severity == "error"
    assert "not verifiable without a create" in scope.message
    world.environ["INTERCOM_TOKEN"] = INTERCOM_EMULATOR_TOKEN
    assert world.reconciler().reconcile_target("web", RotateNow()).phase == "idle"
    assert world.record().missing_scope is None
    [assumed] = by_check(findings(world), "intercom.write_scope")
    assert (assumed.severity, "assumed" in assumed.message) == ("ok", True)


def test_doctor_warns_of_backoff_and_of_a_hook_confirmation_long_overdue(
    world, openbao, emulator, vault_settings
):
    """Backoff is a warning with its last error; a hook-only rollout past deadline + 1h too."""
    world.settings = make_settings(openbao, emulator, vault_settings, confirmation="hook")
    bootstrap(world)
    world.emulator.set_faults("5xx=1")
    world.reconciler().reconcile_target("web", RotateNow())
    [backoff] = by_check(findings(world, act=False), "record.backoff")
    assert backoff.severity == "warning"
    assert "backing off" in backoff.message
    world.emulator.set_faults("5xx=0")
    world.clock.advance(hours=2)
    world.reconciler().reconcile_target("web", RotateNow())
    assert world.record().phase is Phase.AWAITING_ROLLOUT
    world.clock.advance(hours=24 + 2)
    [late] = by_check(findings(world), "record.awaiting_hook")
    assert late.severity == "warning"
    assert late.fix == "once your services use it, confirm it: rotator confirm web"


def test_vault_capabilities_reports_what_the_token_may_do(openbao, vault_settings, vault_env):
    """Vault.capabilities asks sys/capabilities-self: root may do all, a policy what it grants."""
    vault = Vault(vault_settings, environ=vault_env)
    assert vault.capabilities(["secret/data/a/b"]) == {"secret/data/a/b": ["root"]}
    vault.close()
    openbao.kv_policy("caps-read", "caps", '"read", "list"')
    limited = Vault(vault_settings, environ={"VAULT_TOKEN": openbao.create_token(["caps-read"])})
    assert limited.capabilities(["/secret/data/caps/x", "secret/data/other"]) == {
        "secret/data/caps/x": ["list", "read"],
        "secret/data/other": ["deny"],
    }
    limited.close()


def test_rotate_on_drift_must_be_a_boolean():
    """rotate_on_drift = "yes" is a configuration error naming the key."""
    raw = {
        "vault": {"address": "http://127.0.0.1:8200"},
        "targets": [
            {
                "name": "web",
                "token_env": "T",
                "secret_name": "S",
                "vault_path": "p",
                "rotate_on_drift": "yes",
            }
        ],
    }
    with pytest.raises(ConfigError, match=r"targets\[0\] \(web\)\.rotate_on_drift"):
        parse_settings(raw)
    raw["targets"][0]["rotate_on_drift"] = True
    assert parse_settings(raw).targets[0].rotate_on_drift


def test_doctor_says_when_the_mount_is_not_kv_v2(world, openbao):
    """A KV version 1 mount is an error with the fix, not a silently empty target."""
    mount = f"kv1-{world.settings.vault.state_path.split('/')[1][:8]}"
    openbao.admin().sys.enable_secrets_engine("kv", path=mount, options={"version": "1"})
    vault = world.settings.vault.model_copy(update={"mount": mount})
    world.settings = world.settings.model_copy(update={"vault": vault})
    [v1] = by_check(findings(world), "vault.kv_v2")
    assert v1.severity == "error"
    assert "not KV v2" in v1.message
    assert "KV version 2" in v1.fix


def test_a_secret_owned_by_another_target_is_not_adopted(world):
    """Two targets in one workspace never share a secret: adopting the other's is refused."""
    other = world.target.model_copy(
        update={
            "name": "app",
            "secret_name": "Production App",
            "vault_path": world.target.vault_path.replace("/web", "/app"),
        }
    )
    world.settings = world.settings.model_copy(update={"targets": (world.target, other)})
    world.reconciler().reconcile_all()
    theirs = world.reconciler().record("app")[0].current_id
    stored = world.emulator.store.get(theirs)
    with pytest.raises(UsageError, match="belongs to target app"):
        adopt_secret(world.parts(), world.target, theirs, SecretValue(stored.secret), force=True)
    assert world.consumer()["intercom_id"] != theirs


def test_doctor_names_a_foreign_secret_at_the_consumers_path(world):
    """A secret someone wrote by hand at the consumers' path (neither created nor adopted) is an
    error naming both ways out, before the next rotation blocks on it."""
    bootstrap(world)
    foreign_id = world.hand_made_secret("Somebody's hand-made secret", created_at=1)
    [finding] = by_check(findings(world), "drift.consumer_foreign")
    assert finding.severity == "error"
    assert f"rotator adopt web --secret-id {foreign_id} --force" in finding.fix


@pytest.mark.parametrize(
    ("policy", "said"),
    [
        ("consumers", "retired once every named consumer is on the new one"),
        ("hook-or-grace", "--consumer NAME`), or after the grace period unless a probe still sees"),
        ("grace", "retired after the grace period, unless a probe still sees an instance on it"),
    ],
)
def test_adopting_over_a_target_with_named_consumers_says_what_retires_its_secret(
    world, policy, said
):
    """With named consumers, adopting over the target's current secret without --force is
    refused with what its policy really waits for (a consumers target once crashed with a
    KeyError here; a grace never retires past a probe that still sees the old secret)."""
    bootstrap(world)
    probed = ConsumerSettings(name="web-backend", probe_urls=("http://127.0.0.1:9/probe",))
    target = world.target.model_copy(update={"confirmation": policy, "consumers": (probed,)})
    secret_id, material = legacy(world)
    with pytest.raises(UsageError, match="Add --force") as refused:
        adopt_secret(world.parts(), target, secret_id, material, force=False)
    assert said in str(refused.value)
