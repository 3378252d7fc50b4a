"""``rotator config-schema``: a valid JSON Schema that accepts every configuration rotator ships
or documents, and refuses what check-config refuses value by value."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_readme import DOCS, _as_config, _fenced

from rotator.cli.schema import config_schema
from rotator.config import ConfigError, parse_settings
from rotator.demo.scenario import _config_text

REPO = Path(__file__).resolve().parents[1]
ROTATOR = [sys.executable, "-m", "rotator"]


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(config_schema())


def shipped_and_documented() -> list[tuple[str, dict[str, Any]]]:
    """Every configuration of the repository: the Kubernetes one, the demo's, and each TOML
    example of the README and the operator guide (a fragment completed as test_readme does)."""
    configs = [
        ("deploy/base/rotator.toml", tomllib.loads((REPO / "deploy/base/rotator.toml").read_text()))
    ]
    demo = _config_text(
        "http://127.0.0.1:8200",
        "http://127.0.0.1:4010",
        8080,
        "20s",
        "10s",
        probes={"api": "http://127.0.0.1:9001/.well-known/intercom-secret"},
    )
    configs.append(("rotator demo", tomllib.loads(demo)))
    for doc, text in sorted(DOCS.items()):
        for i, block in enumerate(_fenced("toml", text)):
            configs.append((f"{doc} toml block {i}", _as_config(block)))
    return configs


def errors(validator: Draft202012Validator, config: dict[str, Any]) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)
    ]


def test_the_schema_is_a_valid_json_schema():
    """The schema is valid JSON Schema draft 2020-12 (the dialect it declares), titled, and
    closed: an unknown key anywhere is an error, as in check-config."""
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert all(
        d["additionalProperties"] is False for d in schema["$defs"].values() if "properties" in d
    )


def test_rotator_config_schema_prints_it():
    """`rotator config-schema` prints that schema as JSON on stdout and exits 0."""
    result = subprocess.run(
        [*ROTATOR, "config-schema"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == config_schema()


@pytest.mark.parametrize(
    ("name", "config"), [pytest.param(*named, id=named[0]) for named in shipped_and_documented()]
)
def test_every_shipped_and_documented_config_validates(validator, name, config):
    """Each configuration the repository ships or documents is valid to the schema (and to
    rotator), so an editor shows no false error on a file check-config accepts."""
    parse_settings(config, source=name)
    assert errors(validator, config) == []


def test_the_examples_cover_what_the_schema_teaches():
    """The examples above hold durations as text, a schedule and named consumers (so the
    previous test exercises the schema's duration, schedule and consumer rules)."""
    configs = [config for _, config in shipped_and_documented()]
    targets = [t for c in configs for t in c["targets"]]
    assert len(configs) >= 4
    assert any(isinstance(t.get("grace_period"), str) for t in targets)
    assert any("schedule" in t for t in targets)
    assert any(t.get("consumers") for t in targets)


BASE = {
    "vault": {"address": "https://vault.example.com:8200"},
    "targets": [
        {
            "name": "web",
            "token_env": "INTERCOM_TOKEN",
            "secret_name": "Production Web",
            "vault_path": "intercom/web",
        }
    ],
}


def with_target(**keys: Any) -> dict[str, Any]:
    return BASE | {"targets": [BASE["targets"][0] | keys]}


@pytest.mark.parametrize(
    "config",
    [
        with_target(region="EU"),
        with_target(region=" au "),
        with_target(grace_period=3600),
        with_target(grace_period="1h30m", schedule="0 3 * * 1"),
        with_target(schedule="12H"),
        with_target(windows=[{"cron": "0 9 * * 1-4", "duration": "2h", "timezone": "UTC"}]),
        BASE | {"daemon": {"reconcile_interval": 30, "concurrency": 4}},
        BASE | {"probes": {"timeout": "500ms", "deadline": "2s"}},
    ],
    ids=[
        "region-upper",
        "region-spaces",
        "seconds",
        "hm-cron",
        "interval-upper",
        "window",
        "numbers",
        "ms",
    ],
)
def test_what_rotator_reads_in_other_forms_is_valid_too(validator, config):
    """Forms rotator reads besides the canonical ones (a region in capitals, a duration as a
    number of seconds or in mixed units, a cron line) are valid to the schema too."""
    parse_settings(config)
    assert errors(validator, config) == []


@pytest.mark.parametrize(
    ("config", "where"),
    [
        (BASE | {"vault": {"address": "https://v:8200", "mont": "kv"}}, "vault"),
        (with_target(grace_periode="24h"), "targets/0"),
        (with_target(confirmation="maybe"), "targets/0/confirmation"),
        (with_target(region="mars"), "targets/0/region"),
        (with_target(grace_period="24 hours"), "targets/0/grace_period"),
        (with_target(grace_period=-1), "targets/0/grace_period"),
        (with_target(grace_period=400 * 86400), "targets/0/grace_period"),
        (with_target(schedule="every day"), "targets/0/schedule"),
        (with_target(platforms="web"), "targets/0/platforms"),
        (with_target(rotate_on_drift="yes"), "targets/0/rotate_on_drift"),
        (
            with_target(consumers=[{"name": "api", "stable_probes": 0}]),
            "targets/0/consumers/0/stable_probes",
        ),
        (BASE | {"daemon": {"concurrency": "eight"}}, "daemon/concurrency"),
        ({"targets": BASE["targets"]}, ""),
    ],
    ids=[
        "unknown-key",
        "typo",
        "choice",
        "region",
        "duration-text",
        "negative",
        "too-long",
        "schedule",
        "not-a-list",
        "not-bool",
        "range",
        "string-int",
        "no-vault",
    ],
)
def test_a_wrong_config_is_invalid_where_it_is_wrong(validator, config, where):
    """A typo, a wrong type, an unknown choice or a value out of range is invalid to the schema,
    at the key that is wrong; and rotator refuses it too (the schema is never the stricter)."""
    found = errors(validator, config)
    assert any(e.partition(": ")[0] == where for e in found), found
    with pytest.raises(ConfigError):
        parse_settings(config)


def test_every_default_is_valid_for_its_key():
    """Each key's default, as an editor would insert it, is valid for that key (durations are
    numbers of seconds within their range, a schedule its text)."""
    schema = config_schema()
    checked = 0
    for definition in schema["$defs"].values():
        for prop in definition.get("properties", {}).values():
            if "default" in prop:
                Draft202012Validator({"$defs": schema["$defs"], **prop}).validate(prop["default"])
                checked += 1
    assert checked > 40


def test_fields_carry_their_comment_as_description():
    """The `#:` comment above a field in the models is its description, and a duration's also
    says its range: what an editor shows on hover."""
    targets = config_schema()["$defs"]["TargetSettings"]["properties"]
    assert targets["adopt"]["description"].startswith("Ids of existing Intercom secrets")
    assert "from 0s to 365d" in targets["grace_period"]["description"]
    assert "5-field cron line" in targets["schedule"]["description"]


TAPLO = shutil.which("taplo", path=str(Path(sys.executable).parent)) or shutil.which("taplo")


@pytest.mark.skipif(TAPLO is None, reason="taplo is not installed (pip install taplo)")
def test_taplo_checks_a_file_that_names_the_schema(tmp_path):
    """As the operator guide says: with `#:schema ./rotator.schema.json` on its first line, taplo
    (what Even Better TOML runs) accepts the shipped config and reports a misspelt key and an
    unknown choice, at their lines."""
    assert TAPLO is not None
    (tmp_path / "rotator.schema.json").write_text(json.dumps(config_schema()))
    shipped = (REPO / "deploy/base/rotator.toml").read_text()
    header = "#:schema ./rotator.schema.json\n"
    (tmp_path / "good.toml").write_text(header + shipped)
    wrong = shipped.replace('grace_period = "24h"', 'grace_periode = "24h"').replace(
        'confirmation = "hook-or-grace"', 'confirmation = "maybe"'
    )
    assert wrong.count("grace_periode") == 1
    (tmp_path / "bad.toml").write_text(header + wrong)

    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TAPLO, "check", name],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    good = check("good.toml")
    assert good.returncode == 0, good.stderr
    bad = check("bad.toml")
    assert bad.returncode != 0
    assert "'grace_periode' was unexpected" in bad.stderr
    assert '"maybe" is not one of' in bad.stderr
