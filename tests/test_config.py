"""Configuration: validated at load, every error at once with its key; schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotator.config import ConfigError, config_path, load_settings, parse_settings
from rotator.config.schedule import Schedule

VAULT = {"address": "http://127.0.0.1:8200"}
TARGET = {"name": "web", "token_env": "T", "secret_name": "Production Web", "vault_path": "a/b"}


def problems(raw) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


def test_defaults_are_sensible():
    """A minimal target gets web, 30 days, a day of grace, hook-or-grace, the us region."""
    target = parse_settings({"vault": VAULT, "targets": [TARGET]}).targets[0]
    assert target.platforms == ("web",)
    assert target.schedule.interval == 30 * 86400
    assert target.grace_period == 86400
    assert target.confirmation == "hook-or-grace"
    assert target.endpoint == "https://api.intercom.io"


def test_every_problem_is_reported_with_its_key():
    """Many mistakes, one report: each line starts with the TOML key at fault."""
    found = problems(
        {
            "vault": {"address": "ftp://x", "mout": "secret", "auth": {"method": "approle"}},
            "server": {"listen": "8080"},
            "targets": [
                {
                    **TARGET,
                    "platforms": ["tv"],
                    "grace_period": "soon",
                    "region": "mars",
                    "confirmation": "maybe",
                }
            ],
        }
    )
    keys = [p.split(":")[0] for p in found]
    assert keys == [
        "vault.address",
        "vault.auth",
        "vault.mout",
        "server.listen",
        "targets[0] (web).region",
        "targets[0] (web).platforms",
        "targets[0] (web).grace_period",
        "targets[0] (web).confirmation",
    ]
    assert any("unknown key" in p for p in found)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"token_env": None}, "give exactly one of token_env"),
        ({"token_vault": "intercom/token#token"}, "give exactly one of token_env"),
        ({"token": "inline"}, "unknown key"),
        ({"name": "Web Site"}, "use lowercase letters"),
        ({"schedule": "0 25 * * *"}, "invalid cron line"),
        ({"schedule": "monthly"}, "neither an interval"),
        ({"schedule": "0.5s"}, "from 1s to 1825d"),
        ({"base_url": "not a url"}, "http(s) URL"),
        ({"vault_path": "/"}, "must not be empty"),
    ],
)
def test_target_mistakes(target, message):
    """Each kind of target mistake is named."""
    spec = {k: v for k, v in {**TARGET, **target}.items() if v is not None}
    assert any(message in p for p in problems({"vault": VAULT, "targets": [spec]}))


def test_targets_must_be_distinct():
    """Two targets may not share a name, a Vault path or a secret lineage."""
    found = problems({"vault": VAULT, "targets": [TARGET, {**TARGET, "vault_path": "c"}]})
    assert any("target name 'web' is used 2 times" in p for p in found)
    assert any("share secret_name" in p for p in found)


def test_no_targets_is_an_error():
    """A config without targets says what to add."""
    assert problems({"vault": VAULT}) == ["targets: add at least one [[targets]] table"]


def test_vault_address_falls_back_to_the_environment(monkeypatch):
    """address defaults to $VAULT_ADDR; without either, the error says so."""
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example:8200/")
    assert (
        parse_settings({"vault": {}, "targets": [TARGET]}).vault.address
        == "https://vault.example:8200"
    )
    monkeypatch.delenv("VAULT_ADDR")
    assert any("VAULT_ADDR" in p for p in problems({"vault": {}, "targets": [TARGET]}))


def test_files_that_cannot_be_read(tmp_path):
    """Missing files and broken TOML are configuration errors, not crashes."""
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[vault\naddress=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)


def test_config_path_precedence(tmp_path):
    """--config, then $ROTATOR_CONFIG, then ./rotator.toml."""
    assert config_path("a.toml", {"ROTATOR_CONFIG": "b.toml"}).name == "a.toml"
    assert config_path(None, {"ROTATOR_CONFIG": "b.toml"}).name == "b.toml"
    assert str(config_path(None, {})) == "rotator.toml"


def test_interval_schedules_count_from_the_last_rotation():
    """An interval is added to the last rotation's time."""
    last = datetime(2026, 1, 1, tzinfo=UTC)
    assert Schedule.parse("12h").next_after(last) == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_cron_schedules_fire_strictly_after_the_last_rotation():
    """A cron line gives the next matching minute after the last rotation, in UTC."""
    monday_3am = Schedule.parse("0 3 * * 1")
    assert monday_3am.next_after(datetime(2026, 11, 24, 12, tzinfo=UTC)) == datetime(
        2026, 11, 30, 3, tzinfo=UTC
    )
    assert monday_3am.next_after(datetime(2026, 11, 30, 3, tzinfo=UTC)) == datetime(
        2026, 12, 7, 3, tzinfo=UTC
    )
    assert "cron" in monday_3am.describe()
    assert Schedule.parse("90m").describe() == "every 1h30m"


@pytest.mark.parametrize(
    ("weekday", "expected"),
    [
        ("0", "sun"),
        ("7", "sun"),
        ("1", "mon"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("0,6", "sun,sat"),
        ("mon-fri", "mon-fri"),
        ("*", "*"),
    ],
)
def test_crontab_weekday_numbers_follow_cron_not_apscheduler(weekday, expected):
    """Cron's 0/7 = Sunday, 1 = Monday; APScheduler 3.x would shift numbers by a day."""
    from rotator.config.schedule import crontab_weekdays

    assert crontab_weekdays(weekday) == expected


def test_a_sunday_cron_fires_on_sunday():
    """'0 0 * * 0' fires on a Sunday (2026-11-29), not on Monday."""
    assert Schedule.parse("0 0 * * 0").next_after(datetime(2026, 11, 24, tzinfo=UTC)) == datetime(
        2026, 11, 29, tzinfo=UTC
    )


def test_a_hook_credential_has_one_source():
    """Both hook_token_env and hook_token_vault (or the HMAC pair) is an error, not a guess."""
    found = problems(
        {
            "vault": VAULT,
            "server": {
                "hook_token_env": "A",
                "hook_token_vault": "p#k",
                "hook_hmac_key_env": "B",
                "hook_hmac_key_vault": "q",
            },
            "targets": [TARGET],
        }
    )
    assert any("at most one of hook_token_env or hook_token_vault" in p for p in found)
    assert any("at most one of hook_hmac_key_env or hook_hmac_key_vault" in p for p in found)
