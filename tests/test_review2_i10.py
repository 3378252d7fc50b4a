"""A second adversarial review of the issue-10 fixes: each test replays one break found by running
the real `rotator` processes against a real OpenBao and the Intercom emulator.

Each test's first sentence states the behaviour expected; the rest is what was observed.
"""

from __future__ import annotations

import json

from test_operator_process import state, write_state
from test_safety_findings import cli as cli  # noqa: PLC0414 - the fixture, re-exported here

from rotator.emulator import Token


def test_a_hand_edit_without_schema_version_gets_rollback_advice_not_upgrade(cli):
    """A hand-edited record with no `schema_version` is a damaged record: `status` names the
    `kv rollback` to the last version that reads, not "Upgrade rotator". Observed: `state record
    has schema_version None; ... Upgrade rotator (or restore the record)`, no version named."""
    cli.provision()
    good = state(cli)[1]
    write_state(cli, "web", {"target": "web", "phase": "idle"})
    result = cli.run("status", "--json")
    [web] = json.loads(result.stdout)
    assert web["phase"] == "unknown"
    assert "Upgrade rotator" not in web["last_error"], web["last_error"]
    assert f"kv rollback -version={good} " in web["last_error"], web["last_error"]


def test_a_read_only_token_refused_twice_does_not_block_the_target(cli):
    """A process whose Intercom token lacks the write scope, run against a record bound to
    another (working) token, fails alone every time: the record stays bound to the working
    token and never becomes blocked. Observed: the first `rotate-now` says the record "is left
    as it is" yet rebinds it to the read-only token; the second run then blocks the target,
    and the working token's `reconcile` finds it blocked."""
    cli.provision()
    cli.emulator.emulator.add_token(Token.parse("review2-read-only:read"))
    env = {**cli.env, "INTERCOM_TOKEN": "review2-read-only"}
    for _ in range(2):
        result = cli.run("rotate-now", "web", env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Intercom refused this process's token" in result.stdout, result.stdout
    after = cli.status()
    assert after["phase"] != "blocked", after
    assert after["blocked_reason"] is None, after
    result = cli.run("reconcile")
    assert "blocked" not in result.stdout, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
