"""Rotation windows: when a target may start a scheduled rotation and retire an old secret.

    windows = [ { cron = "0 9 * * 1-4", duration = "6h", timezone = "Europe/Berlin" } ]

A window opens at each time its 5-field cron line names, read on the wall clock of its IANA
``timezone`` (default ``UTC``), and stays open for ``duration`` of elapsed time (1m to 7d): a
window opening at 01:00 for 6h on a spring-forward night closes at 08:00 local time, six real
hours later. Daylight-saving changes follow APScheduler's ``CronTrigger`` with ``zoneinfo``: a
start time the spring change skips (02:30 in Berlin on its last Sunday of March) opens the window
when the skipped hour's offset lands, one hour later on the wall clock (03:30); a start time the
autumn change repeats opens it at each occurrence (the two overlap into one longer window).

Several windows: open when any is. What the windows allow is ruled by ``rotator.core.windows``;
this module only knows clocks, and ``window_state`` hands the core the answer as plain values.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, field_validator, model_validator

from rotator.config import bounds
from rotator.config.bounds import describe, within
from rotator.config.common import Model
from rotator.config.schedule import MAX_INTERVAL, Schedule, cron_trigger
from rotator.core.windows import WindowState
from rotator.durations import format_duration

#: How far ahead a window's next opening is looked for: the longest schedule interval.
HORIZON = timedelta(seconds=MAX_INTERVAL)
#: Longer than any daylight-saving shift (``next_opening``), and the openings walked over it.
_DST_SHIFT, _LOOKBACK, _NEAR = timedelta(hours=3), 200, timedelta(minutes=1)
#: Openings looked at when measuring the longest gap between two (``longest_gap``).
_GAP_SAMPLES = 1000


def _cron_text(value: Any) -> Any:
    return " ".join(value.split()) if isinstance(value, str) else value


class WindowSettings(Model):
    """One window: opens at each ``cron`` time in ``timezone``, open for ``duration``."""

    cron: Annotated[str, BeforeValidator(_cron_text)]
    duration: Annotated[float, within(bounds.WINDOW_DURATION)]
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value[:60]!r}: use an IANA name such as "
                "'Europe/Berlin', 'America/New_York' or 'UTC'"
            ) from None
        return value

    @model_validator(mode="after")
    def _opens(self) -> Self:
        if len(self.cron.split(" ")) != 5:
            raise ValueError(f"cron {self.cron[:60]!r} must have 5 fields, as in '0 9 * * 1-4'")
        start = datetime.now(UTC)
        if next_opening(self, start, end=start + HORIZON) is None:
            raise ValueError(
                f"window cron {self.cron!r} never opens in the next {describe(MAX_INTERVAL)} "
                "(a day that never comes, such as 31 February?): the target would never rotate"
            )
        return self


def _trigger(window: WindowSettings, end: datetime | None) -> Any:
    return cron_trigger(
        window.cron, end=end, timezone=ZoneInfo(window.timezone), what="window cron"
    )


def next_opening(
    window: WindowSettings, start: datetime, *, end: datetime | None = None
) -> datetime | None:
    """The first opening at or after ``start`` (UTC), or ``None`` before ``end`` / ever.

    APScheduler searches by wall clock: an opening the spring change moved an hour later (02:30
    that does not exist opens at 03:30) lies after a wall-clock ``start`` of 03:10 and is
    skipped for the next day's. So the openings from a few hours earlier are walked too."""
    direct = _fire(window, start, end or start + HORIZON)
    if direct is not None and direct - start < _NEAR:
        return direct  # nothing can hide in less than a minute: no walk for frequent windows
    at = start - _DST_SHIFT
    for _ in range(_LOOKBACK):
        fire = _fire(window, at, direct or end or start + HORIZON)
        if fire is None or (direct is not None and fire >= direct):
            break
        if fire >= start:
            return fire
        at = fire + timedelta(seconds=1)
    return direct


def _fire(window: WindowSettings, start: datetime, end: datetime) -> datetime | None:
    fire: datetime | None = _trigger(window, end).get_next_fire_time(None, start)
    return None if fire is None else fire.astimezone(UTC)


def window_state(windows: tuple[WindowSettings, ...], now: datetime) -> WindowState | None:
    """Whether ``now`` lies inside one of ``windows``, and when the next opens; ``None`` for a
    target without windows (it behaves as before windows existed)."""
    if not windows:
        return None
    closes: list[datetime] = []
    opens: list[datetime] = []
    for window in windows:
        length = timedelta(seconds=window.duration)
        # The first opening after now - duration (to the second) is open now if not after now.
        began = next_opening(window, now - length + timedelta(seconds=1), end=now + HORIZON)
        if began is not None and began <= now:
            closes.append(began + length)
            continue
        if began is not None:
            opens.append(began)
    if closes:
        return WindowState(open=True, closes_at=max(closes))
    return WindowState(open=False, opens_at=min(opens) if opens else None)


def longest_gap(windows: tuple[WindowSettings, ...], start: datetime, span: timedelta) -> float:
    """Seconds of the longest stretch in ``[start, start + span]`` with no window open (looks
    at up to ``_GAP_SAMPLES`` openings per window: enough for any schedule's period)."""
    spans: list[tuple[datetime, datetime]] = []
    end = start + span
    for window in windows:
        at, seen = start, 0
        while seen < _GAP_SAMPLES:
            fire = next_opening(window, at, end=end)
            if fire is None:
                break
            spans.append((fire, fire + timedelta(seconds=window.duration)))
            at, seen = fire + timedelta(seconds=1), seen + 1
        else:  # a frequent window: judge only the stretch its samples cover
            end = min(end, at)
    gap, covered = 0.0, start
    for opened, closed in sorted(spans):
        gap = max(gap, (opened - covered).total_seconds())
        covered = max(covered, closed)
    return max(gap, (end - covered).total_seconds()) if covered < end else gap


def window_problems(schedule: Schedule, windows: tuple[WindowSettings, ...]) -> list[str]:
    """Windows that can leave a whole schedule period with none open: a rotation due then
    could not start within its period, so the schedule would silently not hold (refused, as
    cert-manager's issue 9146 shows a renewal window that never fits its period must be)."""
    if not windows or schedule.interval is None:
        return []
    start = datetime.now(UTC)
    span = timedelta(seconds=min(max(2 * schedule.interval, 14 * 86400.0), 400 * 86400.0))
    gap = longest_gap(windows, start, span)
    if gap <= schedule.interval:
        return []
    problem = (
        f"windows leave up to {format_duration(gap)} with none open, longer than the schedule "
        f"interval {format_duration(schedule.interval)}: a rotation due then could not start "
        "within its period. Open the windows more often, or rotate less often"
    )
    return [problem]
