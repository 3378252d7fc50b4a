"""Every duration has a range, checked at load; persisted times never overflow arithmetic.

A ``grace_period`` of ``10000000d`` (or TOML's ``inf``) once passed ``check-config`` and raised
``OverflowError`` after the new secret was stored, leaving the rotation stuck. The ranges live in
``rotator.config.bounds``; the operator guide lists them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.config import ConfigError, config_warnings, parse_settings
from rotator.config.bounds import LEASE_TTL
from rotator.config.schedule import Schedule
from rotator.core.lease import LeaseWatch
from rotator.core.record import Lease
from rotator.durations import parse_duration, shifted

VAULT = {"address": "http://127.0.0.1:8200"}
TARGET = {"name": "web", "token_env": "T", "secret_name": "Production Web", "vault_path": "a/b"}
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def with_value(key: str, value: object) -> dict[str, object]:
    """A valid configuration with ``key`` (``section.name``, or ``targets.name``) set."""
    section, name = key.split(".")
    raw: dict[str, object] = {"vault": dict(VAULT), "targets": [dict(TARGET)]}
    if section == "targets":
        raw["targets"] = [{**TARGET, name: value}]
    else:
        raw[section] = {**raw.get(section, {}), name: value}  # type: ignore[dict-item]
    return raw


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    return caught.value.problems


# key as the error names it, the value just inside each end, just outside each end, the range
BOUNDS = [
    ("vault.timeout", "100ms", "5m", "99ms", "301s", "from 100ms to 5m"),
    ("notify.timeout", "100ms", "5m", "0", "6m", "from 100ms to 5m"),
    ("notify.flush_timeout", "0", "5m", "-1", "5m1s", "from 0s to 5m"),
    ("server.signature_window", "1s", "1h", "0.5", "61m", "from 1s to 1h"),
    ("daemon.reconcile_interval", "1s", "24h", "0s", "25h", "from 1s to 1d"),
    ("daemon.sweep_interval", "1s", "24h", "0s", "25h", "from 1s to 1d"),
    ("daemon.lease_ttl", "1s", "1h", "0s", "2h", "from 1s to 1h"),
    ("targets.grace_period", "0s", "365d", "-1s", "366d", "from 0s to 365d (1 year)"),
    ("targets.schedule", "1s", "1825d", "0.5s", "1826d", "from 1s to 1825d (5 years)"),
]


def error_key(key: str) -> str:
    section, name = key.split(".")
    return f"targets[0] (web).{name}" if section == "targets" else key


@pytest.mark.parametrize(("key", "low", "high", "below", "above", "allowed"), BOUNDS)
def test_each_duration_is_held_to_its_documented_range(key, low, high, below, above, allowed):
    """Both ends of each range are accepted; one step beyond either is refused, naming the key
    and the range."""
    for edge in (low, high):
        parse_settings(with_value(key, edge))
    for beyond in (above, "10000000d", "9" * 400 + "d"):
        [problem] = problems(with_value(key, beyond))
        assert problem.startswith(f"{error_key(key)}: "), problem
        assert allowed in problem, problem
    assert problems(with_value(key, below))[0].startswith(f"{error_key(key)}: ")


@pytest.mark.parametrize("key", [key for key, *_ in BOUNDS if key != "targets.schedule"])
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e300])
def test_toml_inf_and_nan_are_refused_for_every_duration(key, value):
    """TOML's inf and nan (and numbers past any range) name the key and the range allowed."""
    [problem] = problems(with_value(key, value))
    assert problem.startswith(f"{error_key(key)}: must be from "), problem


def test_a_zero_vault_timeout_says_what_is_allowed():
    """`[vault] timeout = 0` is refused with the range, not accepted to fail every request."""
    assert problems(with_value("vault.timeout", 0)) == [
        "vault.timeout: must be from 100ms to 5m, not 0"
    ]


def test_durations_too_long_for_a_float_are_not_durations():
    """A 400-digit amount is infinite as a float: parse_duration refuses it."""
    with pytest.raises(ValueError, match="is too long"):
        parse_duration("9" * 400 + "d")


@pytest.mark.parametrize("schedule", ["30d", "1825d", "0 3 * * 1"])
@pytest.mark.parametrize("last", [END_OF_TIME, datetime(9999, 12, 31, tzinfo=UTC)])
def test_a_last_rotation_near_the_end_of_time_gives_a_due_time_not_an_overflow(schedule, last):
    """A stored last_rotation_at in year 9999 (a damaged record) makes the target due at the
    last instant datetime holds, or earlier, instead of raising OverflowError every pass."""
    due = Schedule.parse(schedule).next_after(last)
    assert last < due <= END_OF_TIME or due == last == END_OF_TIME


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(timezones=st.just(UTC)),
    by=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.timedeltas().map(timedelta.total_seconds),
    ),
)
def test_shifting_a_time_never_overflows(moment, by):
    """shifted(moment, by) never raises: it is moment + by when that exists, else the edge of
    datetime's range in the direction of the shift (NaN: no shift)."""
    result = shifted(moment, by)
    assert result.tzinfo is UTC
    try:
        exact = moment + timedelta(seconds=by)
    except (OverflowError, ValueError):
        if math.isnan(by):
            assert result == moment
        else:
            assert result == (END_OF_TIME if by > 0 else datetime.min.replace(tzinfo=UTC))
    else:
        assert result == exact


@pytest.mark.parametrize("ttl", [math.inf, math.nan, 1e300, -5.0])
def test_a_lease_with_a_damaged_ttl_is_taken_over_after_the_longest_ttl(ttl):
    """A stored lease whose ttl is inf or NaN (never reached) or negative is judged as the
    longest ttl a process may configure (an hour), not held for ever."""
    longest = LEASE_TTL[1]
    now = [0.0]
    watch = LeaseWatch("me", monotonic=lambda: now[0])
    lease = Lease(holder="crashed", nonce="n1", ttl=ttl)
    assert not watch.free("web", lease)
    now[0] = longest - 1
    assert not watch.free("web", lease)
    now[0] = longest
    assert watch.free("web", lease)


# --- weak values: normalised, refused or warned about ------------------------------------------


def test_a_region_in_capitals_is_the_same_region():
    """region = "EU" is read as eu (documented), not refused and not sent elsewhere."""
    target = parse_settings(with_value("targets.region", " EU ")).targets[0]
    assert target.region == "eu"
    assert target.endpoint == "https://api.eu.intercom.io"
    assert problems(with_value("targets.region", "Mars"))[0].startswith("targets[0] (web).region")


def test_settings_that_work_but_are_probably_not_meant_are_warnings():
    """A region that base_url overrides, a zero grace and a grace longer than the interval are
    each named with their key; a config without them has no warning."""
    assert config_warnings(parse_settings({"vault": VAULT, "targets": [TARGET]})) == []
    raw = {
        "vault": VAULT,
        "targets": [
            {**TARGET, "region": "eu", "base_url": "http://127.0.0.1:4010"},
            {**TARGET, "name": "ios", "vault_path": "c", "secret_name": "i", "grace_period": "0s"},
            {
                **TARGET,
                "name": "and",
                "vault_path": "d",
                "secret_name": "a",
                "schedule": "1h",
                "grace_period": "2h",
            },
        ],
    }
    [region, zero, long_grace] = config_warnings(parse_settings(raw))
    assert region.startswith("targets[0] (web): region 'eu' is ignored: base_url")
    assert zero.startswith("targets[1] (ios): grace_period 0s deletes the old secret")
    assert long_grace.startswith("targets[2] (and): grace_period 2h is longer than")
    base_url_only = {**TARGET, "base_url": "http://127.0.0.1:4010"}
    assert config_warnings(parse_settings({"vault": VAULT, "targets": [base_url_only]})) == []


# --- values of the wrong kind that pydantic would have read as numbers --------------------------

COUNTS = ["daemon.concurrency", "notify.attempts", "server.max_body_bytes"]


@pytest.mark.parametrize("key", [key for key, *_ in BOUNDS if key != "targets.schedule"] + COUNTS)
@pytest.mark.parametrize("value", [True, False])
def test_a_toml_boolean_is_refused_for_every_duration_and_count(key, value):
    """`true`/`false` where a duration or a count belongs is refused by key, not read as 1/0."""
    [problem] = problems(with_value(key, value))
    assert problem.startswith(f"{error_key(key)}: must be a "), problem
    assert str(value).lower() in problem, problem


def test_a_schedule_that_is_no_text_is_refused_with_what_it_should_be():
    """`schedule = true` says a schedule is an interval or a cron line, not a Python type."""
    [problem] = problems(with_value("targets.schedule", True))
    assert problem.startswith("targets[0] (web).schedule: must be an interval"), problem


@pytest.mark.parametrize("line", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_line_that_never_fires_is_refused(line):
    """A cron line naming a day that never comes (31 February) is refused: it would never
    rotate, where `status` showed the next rotation at 9999-12-31."""
    [problem] = problems(with_value("targets.schedule", line))
    assert problem.startswith("targets[0] (web).schedule: "), problem
    assert "does not fire in the next 1825d (5 years)" in problem, problem


def test_a_cron_line_for_a_leap_day_is_accepted():
    """29 February comes at least once in every five years: that cron line is kept."""
    settings = parse_settings(with_value("targets.schedule", "0 3 29 2 *"))
    assert settings.targets[0].schedule.cron == "0 3 29 2 *"


@pytest.mark.parametrize(
    "listen", ["256.1.1.1:8080", "1.2.3:8080", "[::g]:8080", "bad_host!:8080", "-a.example:80"]
)
def test_a_listen_host_that_cannot_be_an_address_is_refused(listen):
    """A listen host that is no valid IP literal nor host name is a config error, by key."""
    [problem] = problems(with_value("server.listen", listen))
    assert problem.startswith("server.listen: "), problem
    assert "neither an IP address nor a host name" in problem, problem


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:8080", "127.0.0.1:0", "[::]:8080", "[::1]:9", "localhost:80", "rotator:80"]
)
def test_a_listen_address_or_name_is_accepted(listen):
    """IP literals (v4 and bracketed v6) and host names pass; whether a name resolves is known
    only when `run` listens."""
    assert parse_settings(with_value("server.listen", listen)).server.listen == listen
