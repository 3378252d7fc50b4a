"""The nine ways an independent review broke rotator's promise (issue 9), each replayed.

Each test's first sentence states the rule it proves; the rest of its docstring is the finding
that used to break it. They run the real `rotator` processes (or the in-process reconciler
where time must move) against a real OpenBao dev server and the Intercom emulator, whose
``list_lag`` fault makes lists lag behind creates and deletes as a real API may. Clock skew
between processes is real too: libfaketime moves a `rotator` process's wall clock by days.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _faketime import faketime
from test_regressions import gated_reconciler
from test_rotation import bootstrap
from test_rotation import world as world  # noqa: PLC0414 - the fixture, re-exported here

from rotator.core.observation import RotateNow
from rotator.emulator import Emulator, Token
from rotator.emulator.server import INTERCOM_EMULATOR_TOKEN
from rotator.intercom import IntercomClient, Platforms
from rotator.vault import Vault

ROTATOR = [sys.executable, "-m", "rotator"]
CONFIG = """\
[vault]
address = "{vault}"
mount = "secret"
state_path = "{state}"
[daemon]
lease_ttl = "2s"
[[targets]]
name = "web"
base_url = "{intercom}"
token_env = "INTERCOM_TOKEN"
secret_name = "Production Web"
vault_path = "{path}"
schedule = "30d"
grace_period = "24h"
"""
#: Every list answer shows the workspace as it was an hour ago: empty, in these tests.
BLIND_LISTS = "list_lag=1:1h"


class Cli:
    """A config file and environment for real `rotator` processes on this test's servers."""

    def __init__(self, tmp_path: Path, openbao: Any, emulator: Any, vault_settings: Any) -> None:
        self.tmp_path = tmp_path
        self.openbao = openbao
        self.emulator = emulator
        self.state = vault_settings.state_path
        self.vault_path = vault_settings.state_path.replace("/state", "/web")
        self.vault_settings = vault_settings
        self.env = self.environment("rotator.toml", emulator.url, INTERCOM_EMULATOR_TOKEN)

    def environment(self, name: str, intercom: str, token: str) -> dict[str, str]:
        config = self.tmp_path / name
        config.write_text(
            CONFIG.format(
                vault=self.openbao.address,
                state=self.state,
                intercom=intercom,
                path=self.vault_path,
            )
        )
        return {
            **os.environ,
            "VAULT_TOKEN": self.openbao.root_token,
            "INTERCOM_TOKEN": token,
            "ROTATOR_CONFIG": str(config),
            "ROTATOR_LOG_LEVEL": "info",
            "ROTATOR_FAILPOINTS": "",
        }

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        stdin: str | bytes | None = None,
        failpoints: str = "",
        skew: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        environ = {**(env or self.env), "ROTATOR_FAILPOINTS": failpoints}
        if skew is not None:
            environ.update(faketime(skew))
        raw = subprocess.run(
            [*ROTATOR, *args],
            capture_output=True,
            env=environ,
            timeout=90,
            check=False,
            input=stdin.encode() if isinstance(stdin, str) else stdin,
        )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        for secret in self.emulator.store.all():
            assert secret.secret not in output, "secret material was printed"
        return result

    def status(self) -> dict[str, Any]:
        result = self.run("status", "--json", "--history")
        return json.loads(result.stdout)[0]

    def consumer(self) -> dict[str, Any]:
        vault = Vault(self.vault_settings, environ={"VAULT_TOKEN": self.openbao.root_token})
        try:
            return vault.read(self.vault_path).data or {}
        finally:
            vault.close()

    def write_consumer(self, data: dict[str, Any]) -> None:
        """Write the consumers' path by hand, as an operator restoring a backup would."""
        vault = Vault(self.vault_settings, environ={"VAULT_TOKEN": self.openbao.root_token})
        try:
            vault.write(self.vault_path, data, cas=vault.read(self.vault_path).version)
        finally:
            vault.close()

    def live(self, secret_id: str) -> bool:
        secret = self.emulator.store.get(secret_id)
        return secret is not None and secret.deleted_at is None

    def provision(self) -> str:
        """The first pass provisions the target's first secret; its id."""
        result = self.run("reconcile")
        assert result.returncode == 0, result.stdout + result.stderr
        return str(self.consumer()["intercom_id"])


@pytest.fixture
def cli(tmp_path, openbao, emulator, vault_settings) -> Cli:
    return Cli(tmp_path, openbao, emulator, vault_settings)


def hand_made(emulator: Any, name: str) -> tuple[str, str]:
    """A secret created at Intercom outside rotator: (id, material)."""
    client = IntercomClient(INTERCOM_EMULATOR_TOKEN, base_url=emulator.url)
    try:
        made = client.create_secret(name, Platforms(web=True))
    finally:
        client.close()
    return made.info.id, made.secret.reveal()


# --- 1. absence from one list answer proves nothing ---------------------------------------------


@pytest.mark.parametrize("emergency", [True, False], ids=["emergency", "confirmed"])
def test_retiring_sends_the_delete_even_when_a_list_omits_the_old_secret(cli, emergency):
    """A retired secret is gone at Intercom: retiring always sends its DELETE, whatever a list
    shows. Finding 1: one list answer that omitted the old secret made the rotation skip its
    DELETE; history said "retired" and the leaked secret still verified."""
    leaked = cli.provision()
    cli.emulator.set_faults(BLIND_LISTS)
    if emergency:
        result = cli.run("rotate-now", "web", "--emergency", "--yes")
    else:
        assert cli.run("rotate-now", "web").returncode == 0
        result = cli.run("confirm", "web")
    assert result.returncode == 0, result.stdout + result.stderr
    status = cli.status()
    assert status["phase"] == "idle", status
    assert status["history"][-1]["retired_ids"] == [leaked]
    assert not cli.live(leaked), "the secret history calls retired is still live at Intercom"
    assert cli.live(status["current_secret_id"])


# --- 2. an operator's request is recorded before anything can fail ------------------------------


def test_an_emergency_request_survives_intercom_failing_at_its_start(world):
    """An emergency rotate-now is served even when Intercom fails at its start: the request is
    persisted first and honoured by every process. Finding 2: with Intercom refusing
    connections, the request was never recorded; once Intercom was back, passes said "idle: not
    due" and the leaked secret stayed live until the next scheduled rotation."""
    leaked = bootstrap(world)
    failing = gated_reconciler(world, "operator", {"list_fails": True})
    failing.reconcile_target("web", RotateNow(emergency=True))
    assert world.emulator.store.get(leaked).deleted_at is None
    world.clock.advance(minutes=5)
    world.reconciler(me="daemon").reconcile_all()
    assert world.emulator.store.get(leaked).deleted_at is not None, "the request was lost"
    assert world.record().history[-1].emergency


# --- 3. a confirmation counts only for a secret already stored ----------------------------------


def test_confirm_before_the_store_is_refused(cli):
    """`rotator confirm` names a secret consumers can already read, or it is refused. Finding 3:
    in `creating`, with the material committed but the consumers' path still holding the old
    secret, confirm was accepted and the old secret deleted 3 ms after the path changed."""
    old = cli.provision()
    killed = cli.run("rotate-now", "web", failpoints="vault.before_store=kill")
    assert killed.returncode == -9
    status = cli.status()
    assert status["phase"] == "creating"
    pending = status["pending_secret_id"]
    assert pending is not None
    assert cli.consumer()["intercom_id"] == old
    refused = cli.run("confirm", "web", "--secret-id", pending)
    assert refused.returncode != 0, refused.stdout
    assert cli.live(old)
    assert cli.run("reconcile").returncode == 0
    status = cli.status()
    assert status["phase"] == "awaiting_rollout"
    assert status["confirmed_at"] is None, "the refused confirmation was kept"
    assert cli.live(old), "the old secret was retired without any rollout"


# --- 4. storing a secret again voids its confirmation ---------------------------------------------


def test_a_confirmation_recorded_before_a_block_is_void_after_the_store_again(world):
    """A confirmation is void once the secret is stored again. Finding 4: a confirmation
    recorded before a block survived rotate-now, which stored the secret again and retired the
    old one in the same pass, though consumers had meanwhile been handed another value."""
    old = bootstrap(world)
    old_data = world.consumer()
    reconciler = world.reconciler()
    reconciler.reconcile_target("web", RotateNow())
    new = world.record().pending_id
    assert reconciler.confirm("web", secret_id=new, rotation_id=None, via="cli").status == (
        "confirmed"
    )
    vault = Vault(world.settings.vault, environ=world.environ)
    try:  # a backup of the consumers' path is restored before the retirement pass ran
        vault.write(
            world.target.vault_path, old_data, cas=vault.read(world.target.vault_path).version
        )
    finally:
        vault.close()
    world.reconciler().reconcile_all()
    assert world.record().phase.value == "blocked"
    world.reconciler().reconcile_target("web", RotateNow())
    assert world.emulator.store.get(old).deleted_at is None, "retired on a stale confirmation"
    record = world.record()
    assert record.phase.value == "awaiting_rollout"
    assert record.pending_id == new
    assert record.confirmed_at is None


# --- 5. a lagging list never makes a stored secret vanish ---------------------------------------


def test_a_stored_secret_hidden_by_a_lagging_list_is_not_replaced(cli):
    """A secret whose material reached the consumers' path is never judged vanished on a list,
    never replaced, and never swept as an orphan. Finding 5: the new secret, hidden from lists
    after its POST, plus a crash right after the store: it was judged vanished, a second one
    created, and the secret consumers loaded later swept as an orphan."""
    old = cli.provision()
    cli.emulator.set_faults(BLIND_LISTS)
    killed = cli.run("rotate-now", "web", failpoints="vault.after_store=kill")
    assert killed.returncode == -9
    stored = cli.consumer()["intercom_id"]
    assert stored != old
    assert cli.run("reconcile").returncode == 0
    status = cli.status()
    assert status["phase"] == "awaiting_rollout", status
    assert status["pending_secret_id"] == stored
    assert len(cli.emulator.store.all()) == 2, "a second secret was created"
    cli.emulator.set_faults("")
    assert cli.run("confirm", "web").returncode == 0
    assert cli.live(stored)
    assert not cli.live(old)
    assert cli.consumer()["intercom_id"] == stored


# --- 6. deadlines on a clock every process shares -----------------------------------------------


@pytest.mark.parametrize(
    ("storer", "judge"), [(None, "+2d"), ("-2d", None)], ids=["judge-fast", "storer-slow"]
)
def test_a_grace_period_is_not_cut_short_by_a_skewed_clock(cli, storer, judge):
    """A grace period lasts its length on Vault's clock, whatever the processes' own clocks say.
    Finding 6: the deadline was the storer's wall clock plus the grace, compared with the
    acting process's: a CronJob pod two days fast deleted the old secret 4 s after the store."""
    old = cli.provision()
    assert cli.run("rotate-now", "web", skew=storer).returncode == 0
    assert cli.status()["phase"] == "awaiting_rollout"
    assert cli.run("reconcile", skew=judge).returncode == 0
    assert cli.live(old), "the old secret was deleted before its grace period"
    assert cli.status()["phase"] == "awaiting_rollout"


# --- 7. a record belongs to one Intercom workspace ------------------------------------------------


@pytest.mark.parametrize("other", ["endpoint", "workspace"])
def test_a_process_configured_for_another_workspace_refuses_to_act(cli, other):
    """A record bound to one Intercom workspace and endpoint refuses a process configured for
    another: a clear error, nothing created, nothing stored. Finding 7: a staging copy of the
    config (same Vault paths, another base_url and token) stored a staging secret at the
    production consumers' path; production signatures then failed verification."""
    cli.provision()
    before = cli.consumer()
    staging_token = "staging-token-0123456789"
    if other == "endpoint":
        staging = Emulator(tokens=[Token.parse(f"{staging_token}:read,write")]).serve()
    else:
        staging = None
        cli.emulator.emulator.add_token(Token.parse(f"{staging_token}:read,write:staging"))
    try:
        url = staging.url if staging else cli.emulator.url
        env = cli.environment("staging.toml", url, staging_token)
        refused = cli.run("rotate-now", "web", env=env)
        assert refused.returncode != 0
        assert "workspace" in refused.stderr + refused.stdout
        made = staging.store.all() if staging else cli.emulator.store.all("staging")
        assert made == [], "a secret was created in the other workspace"
    finally:
        if staging:
            staging.stop()
    assert cli.consumer() == before
    assert cli.status()["phase"] == "idle"


# --- 8. a blocked adoption can be resumed ---------------------------------------------------------


def test_a_blocked_adoption_over_a_live_secret_can_resume(cli):
    """An adoption over a live secret that got blocked resumes on rotate-now, and adopt may
    replace it. Finding 8: rotate-now looped on "store requested without a pending secret",
    and adopt refused because a rotation was "in progress"."""
    old = cli.provision()
    old_data = cli.consumer()
    adopted_id, material = hand_made(cli.emulator, "Production Web (legacy)")
    forced = cli.run("adopt", "web", "--secret-id", adopted_id, "--force", stdin=material)
    assert forced.returncode == 0, forced.stderr
    cli.write_consumer(old_data)  # someone restores the old value: the adoption blocks
    cli.run("reconcile")
    assert cli.status()["phase"] == "blocked"
    again = cli.run("adopt", "web", "--secret-id", adopted_id, "--force", stdin=material)
    assert again.returncode == 0, again.stderr
    cli.write_consumer(old_data)
    cli.run("reconcile")
    assert cli.status()["phase"] == "blocked"
    resumed = cli.run("rotate-now", "web")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = cli.status()
    assert status["phase"] == "awaiting_rollout", status
    assert status["last_error"] is None
    assert cli.consumer()["intercom_id"] == status["pending_secret_id"]
    assert cli.live(old)
    assert cli.live(adopted_id)


# --- 9. adopt validates the material before writing anything --------------------------------------


@pytest.mark.parametrize(
    "stdin",
    [b"not-a-secret\n", b"\xff\xfe\xfd" + b"A" * 40 + b"\n"],
    ids=["wrong-shape", "not-utf-8"],
)
def test_adopt_refuses_material_intercom_would_not_issue(cli, stdin):
    """Adopt checks the material has the shape Intercom issues (256 bits, base64url) before
    writing anything: exit 2, the consumers' path unchanged. Finding 9: text of the wrong shape
    only got a warning and reached the consumers' path; a non-UTF-8 line crashed the command
    after writing; every signature then failed."""
    cli.provision()
    before = cli.consumer()
    adopted_id, _ = hand_made(cli.emulator, "Production Web (legacy)")
    refused = cli.run("adopt", "web", "--secret-id", adopted_id, "--force", stdin=stdin)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "material" in refused.stderr
    assert cli.consumer() == before
