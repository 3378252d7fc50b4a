"""Rotation windows read on their time zone's wall clock across daylight-saving changes, in two
zones (Europe/Berlin: 2026-03-29 and 2026-10-25; America/New_York: 2026-03-08 and 2026-11-01),
with the clock injected as ``now``. A duration is elapsed time; a start the spring change skips
opens one hour later on the wall clock; a start the autumn change repeats opens at each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rotator.config.windows import WindowSettings, window_state
from rotator.core.windows import WindowState


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(cron: str, duration: str, zone: str) -> tuple[WindowSettings, ...]:
    return (WindowSettings(cron=cron, duration=duration, timezone=zone),)


@pytest.mark.parametrize(
    ("zone", "day", "opens"),
    [
        # 02:30 does not exist: the window opens at 02:30 in the old offset (03:30 new time).
        ("Europe/Berlin", "2026-03-29", "2026-03-29T01:30"),
        ("America/New_York", "2026-03-08", "2026-03-08T07:30"),
    ],
)
def test_a_window_at_a_skipped_spring_time_still_opens_that_day(zone, day, opens):
    """A 02:30 window on the spring-forward day is not skipped: closed just before its
    opening, open at it for its full hour, closed after."""
    wins = window("30 2 * * *", "1h", zone)
    start = at(opens)
    before = window_state(wins, start - timedelta(minutes=1))
    assert before == WindowState(open=False, opens_at=start)
    assert window_state(wins, start) == WindowState(open=True, closes_at=start + timedelta(hours=1))
    assert window_state(wins, start + timedelta(minutes=59)).open
    assert not window_state(wins, start + timedelta(hours=1)).open
    assert start.date().isoformat() == day


@pytest.mark.parametrize(
    ("zone", "opens", "closes_local"),
    [
        ("Europe/Berlin", "2026-03-28T23:00", "07:00"),  # 00:00 CET + 6h = 07:00 CEST
        ("America/New_York", "2026-03-08T05:00", "07:00"),  # 00:00 EST + 6h = 07:00 EDT
        ("Europe/Berlin", "2026-10-24T22:00", "05:00"),  # 00:00 CEST + 6h = 05:00 CET
        ("America/New_York", "2026-11-01T04:00", "05:00"),  # 00:00 EDT + 6h = 05:00 EST
    ],
)
def test_a_window_across_the_change_lasts_its_duration_in_real_time(zone, opens, closes_local):
    """A 6h window from local midnight on a change day stays open six real hours: its wall
    clock end moves by the hour the change adds or removes."""
    wins = window("0 0 * * *", "6h", zone)
    start = at(opens)
    state = window_state(wins, start + timedelta(minutes=1))
    assert state is not None
    assert state.open
    assert state.closes_at == start + timedelta(hours=6)
    assert state.closes_at.astimezone(ZoneInfo(zone)).strftime("%H:%M") == closes_local
    assert window_state(wins, start + timedelta(hours=5, minutes=59)).open
    assert not window_state(wins, start + timedelta(hours=6)).open


@pytest.mark.parametrize(
    ("zone", "cron", "first", "second"),
    [
        ("Europe/Berlin", "30 2 * * *", "2026-10-25T00:30", "2026-10-25T01:30"),
        ("America/New_York", "30 1 * * *", "2026-11-01T05:30", "2026-11-01T06:30"),
    ],
)
def test_a_repeated_autumn_time_opens_the_window_at_each_occurrence(zone, cron, first, second):
    """The autumn change repeats an hour: a 30m window in it opens at both occurrences, and is
    closed in between, with the second opening named."""
    wins = window(cron, "30m", zone)
    assert window_state(wins, at(first) + timedelta(minutes=10)).open
    between = window_state(wins, at(first) + timedelta(minutes=40))
    assert between == WindowState(open=False, opens_at=at(second))
    assert window_state(wins, at(second) + timedelta(minutes=10)).open


def test_a_weekday_window_follows_local_time_across_the_change():
    """09:00 Berlin Monday to Thursday: 08:00 UTC on the Thursday before the spring change,
    07:00 UTC on the Monday after; Friday evening names Monday's opening."""
    wins = window("0 9 * * 1-4", "6h", "Europe/Berlin")
    assert window_state(wins, at("2026-03-26T08:00")).open
    assert not window_state(wins, at("2026-03-26T07:59")).open
    friday = window_state(wins, at("2026-03-27T18:00"))
    assert friday == WindowState(open=False, opens_at=at("2026-03-30T07:00"))
    assert window_state(wins, at("2026-03-30T12:59")).open
    assert not window_state(wins, at("2026-03-30T13:00")).open


def test_several_windows_open_when_any_is_and_name_the_soonest():
    """A Berlin and a New York window: open inside either, and closed names the earlier one."""
    wins = (
        *window("0 9 * * *", "1h", "Europe/Berlin"),
        *window("0 9 * * *", "1h", "America/New_York"),
    )
    assert window_state(wins, at("2026-11-30T08:30")).open  # 09:30 Berlin
    assert window_state(wins, at("2026-11-30T14:30")).open  # 09:30 New York
    assert window_state(wins, at("2026-11-30T10:00")) == WindowState(
        open=False, opens_at=at("2026-11-30T14:00")
    )
    assert window_state((), at("2026-11-30T10:00")) is None


@pytest.mark.parametrize(
    ("zone", "now", "opens"),
    [
        ("Europe/Berlin", "2026-03-29T01:10", "2026-03-29T01:30"),  # 03:10 CEST
        ("America/New_York", "2026-03-08T07:10", "2026-03-08T07:30"),  # 03:10 EDT
    ],
)
def test_after_the_spring_jump_the_moved_opening_is_named_not_tomorrows(zone, now, opens):
    """At 03:10 on the spring-forward morning the wall clock is past 02:30, yet the moved
    opening (03:30 new time) is still to come: it is the next opening, not the next day's."""
    wins = window("30 2 * * *", "1m", zone)
    assert window_state(wins, at(now)) == WindowState(open=False, opens_at=at(opens))
