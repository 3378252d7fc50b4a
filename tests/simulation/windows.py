"""Rotation windows in the simulation: what a plan may name, and when its windows are open.

A plan names no window, one or two (``WINDOWS``, drawn as the plan's other choices are), each
``(cron, duration, timezone)``: openings every 3 to 12 hours, or once a day, for ten minutes to
an hour, on the wall clock of UTC, Berlin, New York or Kolkata. So explored runs see a due start
held by a closed window, a retirement held by one, an emergency that ignores it, and a window
that opens while a process lies crashed under its lease (counted in the run's summary).

Every window drawn keeps the simulation's "1d" schedule runnable in every zone, daylight saving
included, as ``rotator.config.windows.window_problems`` requires (no stretch of more than a day
with none open): frequent openings leave at most 12 h closed (13 h across a clock change), and
the daily one is drawn only in zones whose clocks never change, since a daily ten-minute window
in Berlin leaves 24 h 50 min closed across the autumn change, which the configuration refuses
(on some dates only: it looks 14 days ahead of the real day, so that draw would be flaky).

The harness tells when a window is open without rotator's code: APScheduler's cron trigger,
read directly (``next_opening``, ``is_open``), so it judges rotator rather than repeating it.
"""

from __future__ import annotations

import functools
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st
from simulation.world import moment

#: Cron lines opening every 3 to 12 hours: valid for any duration drawn, in any zone.
FREQUENT = ("0 */4 * * *", "30 */6 * * *", "15 1-23/3 * * *", "0 */12 * * *")
DAILY = "45 2 * * *"
DURATIONS = {"10m": 600.0, "30m": 1800.0, "1h": 3600.0}
ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
#: Zones without daylight saving: the only ones a daily window is drawn in.
STEADY = ("UTC", "Asia/Kolkata")

Window = tuple[str, str, str]

WINDOW = st.one_of(
    st.tuples(
        st.sampled_from(FREQUENT), st.sampled_from(sorted(DURATIONS)), st.sampled_from(ZONES)
    ),
    st.tuples(st.just(DAILY), st.sampled_from(sorted(DURATIONS)), st.sampled_from(STEADY)),
)
#: Half the runs name no window (as before); the others one or two.
WINDOWS = st.one_of(st.just(()), st.lists(WINDOW, min_size=1, max_size=2, unique=True).map(tuple))


@functools.cache
def _trigger(cron: str, zone: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(cron, timezone=ZoneInfo(zone))


def _fire(window: Window, instant: float) -> float | None:
    cron, _, zone = window
    fire = _trigger(cron, zone).get_next_fire_time(None, moment(instant))
    return None if fire is None else float(fire.timestamp())


def next_opening(windows: tuple[Window, ...], instant: float) -> float | None:
    """The first opening of any of ``windows`` at or after ``instant`` (world seconds)."""
    fires = [fire for w in windows if (fire := _fire(w, instant)) is not None]
    return min(fires, default=None)


def is_open(windows: tuple[Window, ...], instant: float) -> bool:
    """Whether a step held by windows may happen at ``instant``: always, without windows."""
    if not windows:
        return True
    for window in windows:
        began = _fire(window, instant - DURATIONS[window[1]] + 1.0)
        if began is not None and began <= instant:
            return True
    return False


def longest_closed(windows: tuple[Window, ...], instant: float) -> float:
    """The longest stretch with none of ``windows`` open in the two days from ``instant``
    (0 without windows): how long a step a window holds may wait for it."""
    if not windows:
        return 0.0
    gap, at, end = 0.0, instant, instant + 2 * 86400.0
    while at < end:
        opens = next_opening(windows, at + 1.0)
        if opens is None:
            return end - instant
        gap = max(gap, opens - at)
        at = opens
    return gap
