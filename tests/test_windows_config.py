"""Rotation windows in the configuration (issue 13, item 3): the issue's example loads; an
unknown time zone, a bad cron line, a duration out of bounds and a window that never opens are
refused with their TOML key; windows opening less often than an interval schedule are a warning;
check-config reports a never-opening window with its key and exit 2, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rotator.config import ConfigError, config_warnings, parse_settings

VAULT = {"address": "http://127.0.0.1:8200"}
ISSUE_WINDOW = {"cron": "0 9 * * 1-4", "duration": "6h", "timezone": "Europe/Berlin"}


def target(**changes):
    base = {
        "name": "web",
        "token_env": "INTERCOM_TOKEN",
        "secret_name": "Production Web",
        "vault_path": "intercom/web",
    }
    return base | changes


def load(**changes):
    return parse_settings({"vault": VAULT, "targets": [target(**changes)]}, "rotator.toml")


def refused(**changes) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**changes)
    return "\n".join(caught.value.problems)


def test_the_issues_example_loads_and_a_target_without_windows_has_none():
    """The issue's window as written: cron kept, 6h held as seconds, Berlin's zone; none by
    default."""
    [window] = load(windows=[ISSUE_WINDOW]).targets[0].windows
    assert (window.cron, window.duration, window.timezone) == (
        "0 9 * * 1-4",
        6 * 3600.0,
        "Europe/Berlin",
    )
    assert load().targets[0].windows == ()
    assert (
        load(windows=[{"cron": "0  3 * * *", "duration": "1h"}]).targets[0].windows[0].timezone
        == "UTC"
    )


def test_an_unknown_time_zone_is_refused_with_its_key():
    """A zone zoneinfo does not know: named, with the key and examples of real names."""
    problems = refused(windows=[ISSUE_WINDOW | {"timezone": "Europe/Berlim"}])
    assert "targets[0] (web).windows[0].timezone" in problems
    assert "unknown time zone 'Europe/Berlim'" in problems
    assert "Europe/Berlin" in problems  # the example of a real name


@pytest.mark.parametrize(
    ("cron", "says"),
    [
        ("0 9 * *", "must have 5 fields"),
        ("0 25 * * *", "invalid window cron '0 25 * * *'"),
        ("0 9 * * 8", "invalid day of week"),
        ("0 0 31 2 *", "never opens in the next 1825d"),
        ("0 0 30 2 *", "never opens in the next 1825d"),
    ],
)
def test_a_bad_or_never_opening_cron_line_is_refused(cron, says):
    """A malformed line, or one valid to APScheduler that names a day that never comes (31 or
    30 February), would leave the target never rotating: refused at load time, with the key."""
    problems = refused(windows=[ISSUE_WINDOW | {"cron": cron}])
    assert "targets[0] (web).windows[0]" in problems
    assert says in problems


@pytest.mark.parametrize("duration", ["30s", "8d", "0s", True, "soon"])
def test_a_duration_out_of_bounds_is_refused(duration):
    """A window shorter than a minute or longer than a week, or not a duration: refused."""
    problems = refused(windows=[ISSUE_WINDOW | {"duration": duration}])
    assert "targets[0] (web).windows[0].duration" in problems


def test_unknown_window_keys_are_refused():
    """A typo in a window's keys is an error, not a silently ignored setting."""
    assert "windows[0].zone" in refused(windows=[ISSUE_WINDOW | {"zone": "UTC"}])


def test_windows_that_cannot_open_within_the_schedule_period_are_refused():
    """Mon-Thu windows leave 3d18h closed: longer than a 1d schedule (refused, with its key),
    shorter than 30d (fine); a cron schedule is not compared."""
    problems = refused(windows=[ISSUE_WINDOW], schedule="1d")
    assert "targets[0] (web)" in problems
    assert "windows leave up to 3d18h with none open" in problems
    assert "longer than the schedule interval 1d" in problems
    assert config_warnings(load(windows=[ISSUE_WINDOW], schedule="30d")) == []
    assert config_warnings(load(windows=[ISSUE_WINDOW], schedule="0 3 * * *")) == []
    every_minute = {"cron": "* * * * *", "duration": "1m"}
    assert config_warnings(load(windows=[every_minute], schedule="1h", grace_period="10m")) == []


def test_check_config_refuses_a_never_opening_window_with_exit_2(tmp_path):
    """The real CLI: a 31 February window is reported with its key and exit 2, no traceback."""
    config = tmp_path / "rotator.toml"
    config.write_text(
        '[vault]\naddress = "http://127.0.0.1:8200"\n[[targets]]\nname = "web"\n'
        'token_env = "INTERCOM_TOKEN"\nsecret_name = "Production Web"\nvault_path = "intercom/web"\n'
        'windows = [ { cron = "0 0 31 2 *", duration = "6h", timezone = "Europe/Berlin" } ]\n'
    )
    env = {**os.environ, "ROTATOR_CONFIG": str(config), "INTERCOM_TOKEN": "x" * 20}
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "check-config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "targets[0] (web).windows[0]" in result.stderr
    assert "never opens" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
